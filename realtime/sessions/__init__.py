"""Layer 3: socket sessions: rows in the database, resumable records, per-user slots, control events, live sockets."""
