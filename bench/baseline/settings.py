"""Settings of the baseline: only what Channels needs, read from the environment.

`REDIS_URL` set: channels-redis's core layer (`RedisChannelLayer`) with its defaults
(capacity 100, expiry 60 s) except a socket timeout longer than its 5 s BZPOPMIN, as any
team on redis-py 8 has to set (else idle consumers die of read timeouts). Unset: the
in-memory layer.
"""

import os

SECRET_KEY = os.environ["SECRET_KEY"]
JWT_SIGNING_KEY = os.environ.get("JWT_SIGNING_KEY", SECRET_KEY)
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "baseline.urls"
ASGI_APPLICATION = "baseline.asgi.application"
DATABASES: dict = {}
USE_TZ = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                "prefix": os.environ.get("REDIS_PREFIX", "baseline") + ":asgi",
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
