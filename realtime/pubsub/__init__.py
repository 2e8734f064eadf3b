"""Layer 3: channels: publishing, reading history and presence, the per-loop hub that fans publications out."""
