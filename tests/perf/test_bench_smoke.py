"""Smoke test of the benchmark (bench/run.py --quick): it runs, end to end, and its figures add up.

It runs the one benchmark command on tiny sizes against this project (daphne, Redis) and
the plain Channels baseline, on the suite's Redis, and checks the JSON it writes: every
scenario ran (scenario 5 skipped for the baseline, which has no resume), every count adds up,
nothing was lost, duplicated or out of offset order, and no server logged an error.

No timing threshold anywhere: the figures of a smoke run on a shared machine mean nothing,
and timings belong in the benchmark's own report (docs/performance.md). Needs only
requirements-dev.txt: the optional python-socketio peer is not asked for, and the chart is
checked only when matplotlib is installed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

ROOT = Path(__file__).resolve().parents[2]
OURS, BASELINE = "ours-daphne-redis", "baseline"


def number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def ordered_latencies(entry: dict) -> None:
    """p50 <= p99 (<= max when given), all positive numbers."""
    assert number(entry["p50_ms"]) and number(entry["p99_ms"]), entry
    assert 0 < entry["p50_ms"] <= entry["p99_ms"], entry
    if "max_ms" in entry:
        assert entry["p99_ms"] <= entry["max_ms"], entry


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[dict, str, Path]:
    """One quick run for all the tests of this module: (its JSON, its stdout, its output folder)."""
    redis_url = os.environ.get("TEST_REDIS_URL")
    if not redis_url:
        pytest.fail("TEST_REDIS_URL is not set: run the suite with `make test` (it provides Redis).")
    out = tmp_path_factory.mktemp("bench")
    # The benchmark's processes run without coverage (`make test` measures subprocesses): it would
    # slow them by half, and the end-to-end tests measure the same server code already.
    env = {k: v for k, v in os.environ.items() if k not in ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START")}
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--targets", "ours,baseline", "--redis-url", redis_url,
         "--out", str(out), "--timeout", "60"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    written = sorted(out.glob("*.json"))
    assert len(written) == 1, list(out.iterdir())
    return json.loads(written[0].read_text()), done.stdout, out


def test_every_scenario_ran_for_both_servers(run) -> None:
    document, stdout, _ = run
    assert [target["key"] for target in document["targets"]] == [OURS, BASELINE]
    ours, baseline = document["results"][OURS], document["results"][BASELINE]
    assert {n: entry["status"] for n, entry in ours.items()} == dict.fromkeys("12345", "ok")
    assert {n: entry["status"] for n, entry in baseline.items()} == {**dict.fromkeys("1234", "ok"), "5": "skipped"}
    assert baseline["5"]["reason"] == "no session resume"
    for key in (OURS, BASELINE):
        for n, entry in document["results"][key].items():
            assert entry.get("server_problems", []) == [], (key, n, entry["server_problems"])
    assert document["quick"] is True and document["machine"]["cpus"] >= 1
    # The printed table: one row per server, ratios to the baseline.
    assert "| this project, daphne, Redis |" in stdout and "×)" in stdout, stdout


def test_connect_counts_every_client_and_its_session(run) -> None:
    document, _, _ = run
    for key in (OURS, BASELINE):
        entry = document["results"][key]["1"]
        assert entry["connected"] == entry["clients"] == document["sizes"]["connect"], entry
        assert entry["failed"] == 0 and entry["errors"] == {}, entry
        assert number(entry["connects_per_s"]) and entry["connects_per_s"] > 0
        ordered_latencies(entry)
    # Each welcomed socket of ours has its session row (the baseline has none).
    assert document["results"][OURS]["1"]["sessions_recorded"] == document["sizes"]["connect"]
    assert "sessions_recorded" not in document["results"][BASELINE]["1"]


def test_fixed_rate_fan_out_delivers_everything_once_in_order(run) -> None:
    document, _, _ = run
    sizes = document["sizes"]
    for key in (OURS, BASELINE):
        entry = document["results"][key]["2"]
        assert entry["subscribers"] == sizes["fanout_subscribers"]
        assert entry["measured_publications"] == sizes["fanout_rate"] * sizes["fanout_seconds"]
        assert entry["published_ok"] == entry["publications"] > entry["measured_publications"]  # + warm-up
        assert entry["publish_errors"] == {} and entry["unacknowledged"] == 0
        assert entry["expected_deliveries"] == entry["subscribers"] * entry["publications"]
        assert entry["deliveries"] == entry["expected_deliveries"], entry
        assert entry["lost"] == 0 and entry["lost_pct"] == 0 and entry["duplicates"] == 0, entry
        assert entry["closed"] == {}, entry
        assert entry["achieved_per_s"] > 0
        ordered_latencies(entry)
    ours = document["results"][OURS]["2"]
    assert ours["offset_gaps"] == 0 and ours["offset_repeats"] == 0, ours
    assert document["results"][BASELINE]["2"]["offset_gaps"] is None  # no offsets there


def test_max_rate_fan_out_measures_deliveries_and_server_cpu(run) -> None:
    document, _, _ = run
    for key in (OURS, BASELINE):
        entry = document["results"][key]["3"]
        assert entry["subscribers"] == document["sizes"]["max_subscribers"]
        assert entry["publications"] > 0 and entry["deliveries_in_window"] > 0, entry
        assert entry["deliveries_in_window"] <= entry["publications"] * entry["subscribers"]
        assert entry["deliveries_per_s"] == pytest.approx(entry["deliveries_in_window"] / entry["seconds"], rel=0.01)
        assert number(entry["server_cpu_us_per_delivery"]) and entry["server_cpu_us_per_delivery"] > 0, entry
        assert number(entry["redis_cpu_pct"]) and number(entry["load_cpu_pct"])
        assert entry["lost"] == 0 and entry["duplicates"] == 0 and entry["stalls"] == 0, entry
        assert entry["publish_errors"] == {} and entry["closed"] == {}, entry
        ordered_latencies(entry)
    ours = document["results"][OURS]["3"]
    assert ours["offset_gaps"] == 0 and ours["offset_repeats"] == 0, ours


def test_memory_per_idle_connection_comes_from_the_server_rss(run) -> None:
    document, _, _ = run
    for key in (OURS, BASELINE):
        entry = document["results"][key]["4"]
        assert entry["opened"] == entry["connections"] == document["sizes"]["idle_connections"], entry
        assert entry["failed"] == 0
        assert 0 < entry["rss_before_kib"] < entry["rss_after_kib"] <= entry["rss_peak_kib"], entry
        per = (entry["rss_after_kib"] - entry["rss_before_kib"]) / entry["opened"]
        assert entry["kib_per_connection"] == pytest.approx(per, abs=0.01)


def test_reconnect_storm_resumes_every_client_with_every_publication(run) -> None:
    document, _, _ = run
    entry = document["results"][OURS]["5"]
    assert entry["clients"] == document["sizes"]["storm_clients"]
    assert entry["published_while_down"] > 0
    assert entry["complete"] == entry["clients"] and entry["incomplete"] == 0, entry
    assert entry["resumed"] == entry["clients"] and entry["not_resumed"] == 0, entry
    assert entry["missing"] == 0 and entry["duplicates"] == 0, entry
    assert number(entry["all_back_s"]) and entry["all_back_s"] >= entry["p50_back_s"] > 0, entry


def test_the_chart_is_written_when_matplotlib_is_there(run) -> None:
    document, _, out = run
    assert Path(document["files"]["json"]).parent == out
    if importlib.util.find_spec("matplotlib") is None:
        assert "chart" not in document["files"]
        return
    chart = Path(document["files"]["chart"])
    assert chart.parent == out and chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
