"""`REALTIME["REDIS_URL"]`'s forms (realtime/core/redis_urls.py), and what the settings say of a wrong one."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from realtime.core.redis_urls import ClusterSpec, SentinelSpec, parse_cluster_url, parse_sentinel_url
from realtime.support.conf import realtime_settings
from tests.conftest import override_realtime


@pytest.mark.parametrize(
    ("url", "spec"),
    [
        (
            "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380,127.0.0.1:26381/rtmaster",
            SentinelSpec([("127.0.0.1", 26379), ("127.0.0.1", 26380), ("127.0.0.1", 26381)], "rtmaster"),
        ),
        ("redis+sentinel://s1,s2:5000/main/3", SentinelSpec([("s1", 26379), ("s2", 5000)], "main", 3)),
        (
            "redis+sentinel://:s%40cret@s1:26379/main/0",
            SentinelSpec([("s1", 26379)], "main", 0, username=None, password="s@cret"),
        ),
        (
            "redis+sentinel://app:pw@[::1]:26379,s2/main?sentinel_password=sp",
            SentinelSpec([("::1", 26379), ("s2", 26379)], "main", 0, "app", "pw", "sp"),
        ),
    ],
)
def test_a_sentinel_url_names_the_sentinels_the_service_the_database_and_the_passwords(url, spec):
    assert parse_sentinel_url(url) == spec


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://s1:26379", "names no service"),
        ("redis+sentinel://s1:26379/", "names no service"),
        ("redis+sentinel://s1:x/main", "not a number"),
        ("redis+sentinel://,s2/main", "has no host"),
        ("redis+sentinel://s1/main/zero", "/<service>[/<db>]"),
        ("redis+sentinel://s1/main/0/extra", "/<service>[/<db>]"),
    ],
)
def test_a_wrong_sentinel_url_is_refused_by_the_settings_saying_what_is_wrong(url, says):
    with pytest.raises(ValueError, match=says.replace("[", r"\[").replace("]", r"\]")):
        parse_sentinel_url(url)
    with override_realtime(REDIS_URL=url), pytest.raises(ImproperlyConfigured, match="is not a Sentinel URL"):
        realtime_settings.values  # noqa: B018 - reading them validates them


def test_every_accepted_scheme_is_taken_by_the_settings():
    for url in ("redis://h:6379/0", "rediss://h:6380/1", "unix:///tmp/r.sock", "redis+sentinel://h/m", "redis+cluster://h:7000"):
        with override_realtime(REDIS_URL=url):
            assert realtime_settings.REDIS_URL == url


@pytest.mark.parametrize(
    ("url", "spec"),
    [
        ("redis+cluster://10.0.0.1:7000", ClusterSpec([("10.0.0.1", 7000)])),
        ("redis+cluster://a,b:7001,[::1]:7002", ClusterSpec([("a", 6379), ("b", 7001), ("::1", 7002)])),
        ("redis+cluster://:p%40ss@a:7000,b:7000", ClusterSpec([("a", 7000), ("b", 7000)], None, "p@ss")),
        ("redis+cluster://app:pw@a:7000", ClusterSpec([("a", 7000)], "app", "pw")),
    ],
)
def test_a_cluster_url_names_its_seed_nodes_and_the_password(url, spec):
    assert parse_cluster_url(url) == spec


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster://a:7000/0", "one database"),
        ("redis+cluster://a:port", "not a number"),
        ("redis+cluster://a:7000,,b:7000", "has no host"),
    ],
)
def test_a_wrong_cluster_url_is_refused_by_the_settings_saying_what_is_wrong(url, says):
    with pytest.raises(ValueError, match=says):
        parse_cluster_url(url)
    with override_realtime(REDIS_URL=url), pytest.raises(ImproperlyConfigured, match="is not a Cluster URL"):
        realtime_settings.values  # noqa: B018 - reading them validates them
