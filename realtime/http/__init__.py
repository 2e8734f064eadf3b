"""Layer 6: the HTTP side: the real-time API, the token API and its login throttling, health, metrics."""
