"""Layer 5: one WebSocket: admission, the consumer, its requests, subscriptions, outbox and state."""
