"""A plain Channels project: what a team gets without this project (the benchmark's baseline).

`AsyncJsonWebsocketConsumer` + `group_send` to one group per channel, channels-redis's
core layer, served by daphne; a bearer JWT checked at connect with PyJWT; no sessions,
no history, no offsets, no presence. See `consumers.py` for its small wire format.
"""
