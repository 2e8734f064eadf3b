"""The pure base of `realtime`: wire codes and the error tree, with no Django and no I/O.

Everything here imports only other `realtime.core` modules (docs/plans/reusable-app.md, layer 0).
"""
