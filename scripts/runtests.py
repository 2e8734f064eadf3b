"""Run the test suite with a real Redis; the README's test command calls this.

Redis: `REDIS_URL` when it is set and answers; otherwise a private `redis-server`
on a free port for this run only (stopped afterwards); otherwise exit with how
to install Redis (scripts/local_redis.py, shared with `make run`). Tests reach
it through `TEST_REDIS_URL`; the project itself runs with its embedded defaults
unless a test asks for Redis.

Extra arguments go to pytest, e.g. `make test ARGS="-k healthz"`. The suite runs
on `TEST_WORKERS` pytest-xdist workers (default: 2, or 1 on a one-core machine);
the end-to-end and browser tests stay together on one worker.

First the browser client's unit tests run under Node's own test runner
(`node --test tests/js/`), unless `JS_TESTS=0`; without Node.js the run fails
and says how to install it. They print one line of counts, and each failure in full.

Coverage: pytest-cov measures line and branch coverage and fails the run under
90 % (both together, pyproject.toml). A run of a subset (test paths, `-k`, `-m`,
`--lf`, `--deselect`) cannot reach that, so there the gate is off unless a
`--cov-fail-under` is given, and its coverage table lists only the files whose
functions it ran (the whole suite's lists every file short of 100 %; htmlcov/ has
every file either way). At the end it prints four figures from the run's
data (scripts/coverage_figures.py): lines, branches, functions (those of which at
least one line ran), and the share of the server code that the server processes
of the end-to-end and browser tests ran.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coverage_figures import coverage_arguments, report_coverage
from local_redis import redis_answers, start_private_redis

ROOT = Path(__file__).resolve().parent.parent
JS_TESTS_DIR = ROOT / "tests" / "js"
TAP_PASS = re.compile(r"^(\s*)ok \d+ ")  # a passing test; its YAML block ends at the same indent + "  ..."
TAP_COUNT = re.compile(r"^# (tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$")
TAP_NOISE = re.compile(r"^(\s*TAP version \d+|\s*# Subtest: .*|\s*1\.\.\d+|# duration_ms [\d.]+)$")
NODE_HINT = (
    "The browser client's tests need Node.js 18.15 or newer (Debian/Ubuntu: `sudo apt-get install nodejs`, "
    "macOS: `brew install node`); JS_TESTS=0 skips them."
)


def tap_digest(tap: str) -> tuple[list[str], dict[str, int]]:
    """A TAP report without what passed (the failures in full, and what the test files printed), and its counts."""
    kept: list[str] = []
    counts: dict[str, int] = {}
    skip_until = None  # the end of a passing test's YAML block
    for line in tap.splitlines():
        if skip_until is not None:
            skip_until = None if line == skip_until else skip_until
            continue
        passed, count = TAP_PASS.match(line), TAP_COUNT.match(line)
        if passed:
            skip_until = f"{passed[1]}  ..."
        elif count:
            counts[count[1]] = int(count[2])
        elif not TAP_NOISE.match(line):
            kept.append(line)
    return kept, counts


def run_js_tests(tests: Path = JS_TESTS_DIR) -> int:
    """The browser client's unit tests under `node --test`: one summary line, and every failure in full;
    their exit status."""
    node = shutil.which("node")
    if node is None:
        print(NODE_HINT, file=sys.stderr)
        return 1
    shown = tests.relative_to(ROOT) if tests.is_relative_to(ROOT) else tests
    print(f"== browser client unit tests (node --test {shown})", flush=True)
    with tempfile.TemporaryDirectory(prefix="rt-js-") as tmp:
        report = Path(tmp) / "report.tap"
        # TAP into a file, nothing on the terminal: the default reporter writes a line or more per test.
        command = [node, "--test", "--test-reporter=tap", f"--test-reporter-destination={report}", str(tests)]
        status = subprocess.call(command, cwd=ROOT)
        failures, counts = tap_digest(report.read_text() if report.is_file() else "")
    if status != 0:
        print("\n".join(failures))
    total, passed = counts.get("tests", 0), counts.get("pass", 0)
    failed = f", {counts['fail']} failed" if counts.get("fail") else ""
    others = ", ".join(f"{counts[kind]} {kind}" for kind in ("cancelled", "skipped", "todo") if counts.get(kind))
    print(f"node --test: {total} tests, {passed} passed{failed}" + (f", {others}" if others else ""), flush=True)
    return status


def main(argv: list[str]) -> int:
    if os.environ.get("JS_TESTS", "1") != "0":
        status = run_js_tests()
        if status != 0:
            return status
    env = dict(os.environ)
    url = env.pop("REDIS_URL", "")
    private = None
    with tempfile.TemporaryDirectory(prefix="rt-redis-") as workdir:
        if url and redis_answers(url):
            print(f"Tests use REDIS_URL={url}")
        else:
            if url:
                print(f"REDIS_URL={url} does not answer; starting a private redis-server.")
            private, url = start_private_redis(workdir)
            print(f"Tests use a private redis-server at {url}")
        env["TEST_REDIS_URL"] = url
        workers = int(env.get("TEST_WORKERS") or min(2, os.cpu_count() or 1))
        parallel = ["-n", str(workers), "--dist", "loadgroup"] if workers > 1 else ["-p", "no:xdist"]
        started = time.time()
        try:
            command = [sys.executable, "-m", "pytest", *parallel, *coverage_arguments(argv), *argv]
            status = subprocess.call(command, cwd=ROOT, env=env)
            report_coverage(argv, started)
            return status
        finally:
            if private is not None:
                private.terminate()
                private.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
