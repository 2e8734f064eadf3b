"""Settings from the environment, checked in a fresh interpreter each time."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = "k7-Vw2pQz9xLm4Rt8sYb1Nc6Hd3Jf5Gg0Ea_Ui2Oo7Pp9Ll3Kk8Mm"  # 52 characters, many different ones
PROBE = """
import asyncio, django, json
from django.conf import settings
django.setup()
from realtime.engine import get_engine
from realtime.support.conf import realtime_settings

async def app_engine():  # the engine is made per event loop; making it connects to nothing yet
    engine = get_engine()
    pool = getattr(getattr(engine, "redis", None), "connection_pool", None)
    kwargs = pool.connection_kwargs if pool is not None else {}
    at = f"{kwargs['host']}:{kwargs['port']}/{kwargs['db']}" if kwargs else None
    return type(engine).__module__ + "." + type(engine).__name__, getattr(engine, "prefix", None), at

kind, prefix, at = asyncio.run(app_engine())
db = settings.DATABASES["default"]
print(json.dumps({"engine": db["ENGINE"], "name": str(db["NAME"]),
    "redis_url": realtime_settings.REDIS_URL, "redis_prefix": realtime_settings.REDIS_PREFIX,
    "app_engine": kind, "app_engine_prefix": prefix, "app_engine_at": at, "debug": settings.DEBUG,
    "allowed": settings.ALLOWED_HOSTS, "access": settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds()}))
"""


def run_probe(**env_vars):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    for key in ("DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "DEBUG", "SECRET_KEY", "JWT_SIGNING_KEY", "ALLOWED_HOSTS"):
        env.pop(key, None)
    env.update(DJANGO_SETTINGS_MODULE="project.settings", **env_vars)
    return subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_embedded_defaults():
    result = run_probe()
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["name"].endswith("db.sqlite3")
    assert (values["redis_url"], values["redis_prefix"]) == ("", "rt")
    assert values["app_engine"] == "realtime.engine.memory.MemoryEngine"  # no Redis: one process, in memory
    assert values["debug"] is True
    assert values["access"] == 300
    # Loading the settings says nothing about the development key: the serving process says it, once.
    assert "SECRET_KEY" not in result.stderr and "development key" not in result.stderr, result.stderr


def test_production_environment():
    result = run_probe(
        DEBUG="0",
        SECRET_KEY=STRONG_KEY,
        ALLOWED_HOSTS="rt.example.com,api.example.com",
        DATABASE_URL="postgres://u:p@db.example.com:5432/rt",
        REDIS_URL="redis://cache.example.com:6379/2",
        REDIS_PREFIX="rt-prod",
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["engine"] == "django.db.backends.postgresql"
    assert values["name"] == "rt"
    assert (values["redis_url"], values["redis_prefix"]) == ("redis://cache.example.com:6379/2", "rt-prod")
    assert values["app_engine"] == "realtime.engine.redis.RedisEngine"
    assert (values["app_engine_at"], values["app_engine_prefix"]) == ("cache.example.com:6379/2", "rt-prod")
    assert values["allowed"] == ["rt.example.com", "api.example.com"]
    assert "SECRET_KEY" not in result.stderr


def test_without_a_secret_key_each_checkout_gets_its_own_random_development_key(tmp_path):
    probe = "import django; from django.conf import settings; django.setup(); print(settings.SECRET_KEY)"

    def key(path):
        env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG") and k[:9] != "REALTIME_"}
        env.update(DJANGO_SETTINGS_MODULE="project.settings", DEV_SECRET_KEY_FILE=str(path))
        command = [sys.executable, "-c", probe]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    first = key(tmp_path / "one")
    assert len(first) >= 60 and key(tmp_path / "one") == first  # kept: sessions and tokens survive restarts
    assert (tmp_path / "one").stat().st_mode & 0o777 == 0o600
    assert key(tmp_path / "two") != first  # another checkout: another key
    assert "dev-insecure" not in first and first not in (ROOT / "project" / "settings.py").read_text()


def test_secret_key_required_without_debug():
    result = run_probe(DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize(
    "variable, key",
    [
        ("SECRET_KEY", "s3cret"),  # the finding: 6 characters were accepted
        ("SECRET_KEY", "ab" * 30),  # long, but two different characters
        ("SECRET_KEY", "django-insecure-" + STRONG_KEY),  # startproject's placeholder
        ("JWT_SIGNING_KEY", "s3cret"),  # the tokens' own key, when set apart
    ],
)
def test_a_weak_signing_key_stops_startup_without_debug(variable, key):
    result = run_probe(**{"DEBUG": "0", "SECRET_KEY": STRONG_KEY, variable: key})
    assert result.returncode != 0
    assert f"{variable} is too weak to sign with" in result.stderr and "at least 50 characters" in result.stderr
    assert key not in result.stderr  # the key itself is never printed


def test_a_short_key_is_allowed_in_development():
    result = run_probe(SECRET_KEY="s3cret")
    assert result.returncode == 0, result.stderr


def test_bad_realtime_environment_stops_startup():
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    env["REALTIME_HEARTBEAT"] = "often"
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "REALTIME['HEARTBEAT']" in result.stderr
    assert "environment variable REALTIME_HEARTBEAT" in result.stderr
