"""Layer 3: who is on the other end: JWT checks, revocation, the socket's auth middleware, client addresses."""
