"""Django settings, read from the environment (see README "Configuration").

Every value has a development default so `make run` works on a fresh machine;
production sets at least SECRET_KEY, DEBUG=0, ALLOWED_HOSTS, DATABASE_URL and
REDIS_URL.
"""

import os
import secrets
import tempfile
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from project.devkey import check_signing_key

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DEBUG", default=True)


def _development_key(path: Path) -> str:
    """This checkout's own random development key: made at first use, kept in `path` (git-ignored, 0600).

    Never a key that is in the repository: with one, anyone could sign a staff JWT for
    a server started with the defaults.
    """
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(48)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return path.read_text().strip()
        with os.fdopen(descriptor, "w") as file:
            file.write(key + "\n")
        return key


SECRET_KEY = env.str("SECRET_KEY", default="")
# True when no SECRET_KEY was given: the ASGI application then refuses to serve anything but
# loopback addresses, and with DEBUG off (project.asgi, project.devkey).
DEVELOPMENT_KEY = not SECRET_KEY
if DEVELOPMENT_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    # Said once, by the serving process (project.devkey.check_serving), not by every command.
    DEVELOPMENT_KEY_FILE = Path(env.str("DEV_SECRET_KEY_FILE", default=str(BASE_DIR / ".dev-secret-key")))
    SECRET_KEY = _development_key(DEVELOPMENT_KEY_FILE)
elif not DEBUG:  # a short key can be guessed offline from one signed token or cookie
    check_signing_key("SECRET_KEY", SECRET_KEY)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # daphne first: its runserver serves HTTP and WebSockets on one port.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "channels",
    "accounts",
    "realtime",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

if not DEBUG:
    # Production serves the admin's static files itself (after `collectstatic`), through WhiteNoise
    # without a synchronous iterator (project/staticfiles.py); in development runserver does.
    MIDDLEWARE.insert(1, "project.staticfiles.StaticFilesMiddleware")

ROOT_URLCONF = "project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "project.asgi.application"

DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# Not persistent by default, although the socket path would gain (Channels runs its ORM calls
# on one thread and closes the connection after each with 0): under ASGI Django runs each
# HTTP request on a thread of its own, and a persistent connection left on such a thread is
# never reused nor closed (Django ticket #33497). See docs/operations.md.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=0))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (runserver, daphne workers, the test suite's servers) may
    # share the file: wait for locks instead of failing, and let readers run
    # beside the writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
    # The test database is a file, not memory, so the end-to-end tests' server
    # processes can share it; one per test run, so runs side by side don't collide.
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"realtime-test-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "realtime.auth.drf.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "realtime.http.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    # The client address (login throttling): the peer's, unless this many proxies are in front;
    # then the one they recorded in X-Forwarded-For. A client cannot choose it.
    "NUM_PROXIES": env.int("TRUSTED_PROXY_COUNT", default=0),
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env.int("JWT_ACCESS_SECONDS", default=300)),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=env.int("JWT_REFRESH_SECONDS", default=86400)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", default=SECRET_KEY),
}
if not DEBUG:
    check_signing_key("JWT_SIGNING_KEY", SIMPLE_JWT["SIGNING_KEY"])

# The real-time app's settings (realtime/support/conf.py, docs/configuration.md): this deployment
# takes them from its environment under their own names. Every key can also be set as
# REALTIME_<KEY>, which wins. REDIS_URL unset is the embedded default: one process, in memory.
REALTIME: dict = {
    key: value
    for key, value in {
        # Redis: history, presence, fan-out, session state, control events, login counts.
        "REDIS_URL": env.str("REDIS_URL", default=""),
        "REDIS_PREFIX": env.str("REDIS_PREFIX", default=None),
        # Login throttling: failed logins per username and per address over LOGIN_WINDOW seconds, then
        # 429 with Retry-After; LOGIN_CONCURRENCY password checks at once per process.
        "LOGIN_FAILURES_PER_USER": env.int("LOGIN_FAILURES_PER_USER", default=None),
        "LOGIN_FAILURES_PER_ADDRESS": env.int("LOGIN_FAILURES_PER_ADDRESS", default=None),
        "LOGIN_WINDOW": env.int("LOGIN_WINDOW", default=None),
        "LOGIN_CONCURRENCY": env.int("LOGIN_CONCURRENCY", default=None),
        "LOGIN_WAIT": env.float("LOGIN_WAIT", default=None),
        # `GET /metrics`: the bearer token a scraper must send. Unset, the metrics are open to anyone
        # when DEBUG is on and refused (403) when it is off.
        "METRICS_TOKEN": env.str("METRICS_TOKEN", default=""),
    }.items()
    if value is not None
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's own console handler (DEBUG only) would print every record of "django.*" (runserver's
        # request lines among them) a second time, without a timestamp: one handler, the root's format.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "INFO"},
    },
}

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
