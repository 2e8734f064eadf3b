"""The forms of `REALTIME["REDIS_URL"]`, read without Django or I/O (the settings check them, the engine uses them).

- `redis://…`, `rediss://…`, `unix://…`: one server (redis-py's URL forms);
- `redis+sentinel://[[user]:password@]host:port[,host:port…]/<service>[/<db>]`: the master of
  `<service>` as the sentinels (default port 26379) report it; `?sentinel_password=…` when the
  sentinels want a password of their own (the one before `@` is the master's).
- `redis+cluster://[[user]:password@]host:port[,host:port…]`: a Redis Cluster, any of its nodes
  as seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

SENTINEL_SCHEME = "redis+sentinel://"
CLUSTER_SCHEME = "redis+cluster://"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", SENTINEL_SCHEME, CLUSTER_SCHEME)
SENTINEL_PORT = 26379
REDIS_PORT = 6379


@dataclass(frozen=True)
class SentinelSpec:
    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


@dataclass(frozen=True)
class ClusterSpec:
    nodes: list[tuple[str, int]]
    username: str | None = None
    password: str | None = None


def parse_cluster_url(url: str) -> ClusterSpec:
    """The parts of a `redis+cluster://` URL; ValueError saying what is wrong."""
    if not url.startswith(CLUSTER_SCHEME):
        raise ValueError(f"a Cluster URL starts with {CLUSTER_SCHEME}")
    rest = url[len(CLUSTER_SCHEME) :].partition("?")[0]
    netloc, _, path = rest.partition("/")
    if path:
        raise ValueError(f"a Cluster has one database: nothing comes after the hosts, got /{path}")
    username, password, hosts = _userinfo(netloc)
    return ClusterSpec(_addresses(hosts, REDIS_PORT, "node"), username, password)


def _userinfo(netloc: str) -> tuple[str | None, str | None, str]:
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        return None, None, hosts
    user, colon, secret = userinfo.partition(":")
    return unquote(user) or None, unquote(secret) if colon else None, hosts


def _addresses(hosts: str, default_port: int, what: str) -> list[tuple[str, int]]:
    found = []
    for entry in (part.strip() for part in hosts.split(",")):
        if entry.startswith("["):  # [IPv6]:port
            host, _, port = entry[1:].partition("]")
            port = port.removeprefix(":")
        else:
            host, _, port = entry.partition(":")
        if not host:
            raise ValueError(f"a {what} address has no host: {entry!r} (host:port,host:port…)")
        if port and not port.isdigit():
            raise ValueError(f"a {what} port is not a number: {entry!r}")
        found.append((host, int(port) if port else default_port))
    return found


def parse_sentinel_url(url: str) -> SentinelSpec:
    """The parts of a `redis+sentinel://` URL; ValueError saying what is wrong."""
    if not url.startswith(SENTINEL_SCHEME):
        raise ValueError(f"a Sentinel URL starts with {SENTINEL_SCHEME}")
    rest, _, query = url[len(SENTINEL_SCHEME) :].partition("?")
    netloc, _, path = rest.partition("/")
    username, password, hosts = _userinfo(netloc)
    sentinels = _addresses(hosts, SENTINEL_PORT, "sentinel")
    parts = [unquote(part) for part in path.split("/") if part]
    if not parts:
        raise ValueError("the URL names no service: redis+sentinel://host:port,…/<service>[/<db>]")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError(f"after the hosts come /<service>[/<db>], got /{path}")
    sentinel_password = (parse_qs(query).get("sentinel_password") or [None])[0]
    return SentinelSpec(
        sentinels=sentinels,
        service=parts[0],
        db=int(parts[1]) if len(parts) == 2 else 0,
        username=username,
        password=password,
        sentinel_password=sentinel_password,
    )
