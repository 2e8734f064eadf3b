"""Layer 1: the app's settings (`REALTIME`), its metric counters, and how a failing backing service becomes `unavailable`."""
