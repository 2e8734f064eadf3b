"""Layer 1: the settings (`REALTIME`), metric counters, the process's Node, and backing-service errors."""
