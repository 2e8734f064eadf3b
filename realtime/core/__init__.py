"""Layer 0: the protocol's vocabulary: frames, codes, errors, limits, wire text. No Django, no I/O.

Everything here imports only other `realtime.core` modules (docs/design.md, "Layers").
"""
