"""Layer 4: this server process as a node: registration, the beat, the ASGI lifespan and shutdown."""
