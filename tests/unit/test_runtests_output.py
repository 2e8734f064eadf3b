"""What scripts/runtests.py prints: for the browser client's tests a summary line and the failures in
full; for a part of the suite, the coverage of the files it ran, not a table of 0 % files.

Node itself runs (a real `node --test` process), its output captured at the file descriptors; the
part of the suite is a real runtests.py process, its coverage data and HTML report in a directory of
the test's own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from runtests import run_js_tests  # noqa: E402  (scripts/runtests.py)

pytestmark = pytest.mark.unit

SUMMARY = re.compile(r"^node --test: (\d+) tests, (\d+) passed(?:, (\d+) failed)?", re.M)

FAILING = {
    "plain.test.mjs": """
        import test from "node:test";
        import assert from "node:assert/strict";
        test("quietly passes", () => {});
        test("adds up", () => { assert.equal(1 + 1, 3, "arithmetic is off"); });
    """,
    "nested.test.mjs": """
        import { describe, it } from "node:test";
        import assert from "node:assert/strict";
        describe("a suite", () => {
          it("breaks inside", () => { assert.ok(false, "deep failure"); });
          it("also passes", () => {});
        });
    """,
    "broken.test.mjs": """
        import test from "node:test";
        this is not javascript
    """,
}


def test_the_browser_client_tests_print_a_summary_not_a_report(capfd):
    assert run_js_tests() == 0
    out = capfd.readouterr().out
    [(total, passed, failed)] = SUMMARY.findall(out)
    assert int(total) > 50 and passed == total and failed in ("", "0")
    # The heading and the summary: no line per test (node's default reporter printed ~520 lines).
    assert len(out.splitlines()) <= 4, out


def test_failures_are_printed_in_full_and_passes_are_not(tmp_path, capfd):
    for name, text in FAILING.items():
        (tmp_path / name).write_text(textwrap.dedent(text).lstrip())
    assert run_js_tests(tmp_path) != 0
    out = capfd.readouterr().out
    for needle in ("adds up", "arithmetic is off", "breaks inside", "deep failure", "broken.test.mjs", "SyntaxError"):
        assert needle in out, needle
    assert "quietly passes" not in out and "also passes" not in out
    [(total, passed, failed)] = SUMMARY.findall(out)
    assert (int(passed), int(failed)) == (2, 3) and int(total) >= 5


def test_a_part_of_the_suite_tables_only_the_files_it_ran(tmp_path, redis_url):
    # Not measured by this run's coverage; its own data file and report, so the work tree's stay as they are.
    env = {key: value for key, value in os.environ.items() if not key.startswith("COVERAGE_")}
    env.update(JS_TESTS="0", TEST_WORKERS="1", REDIS_URL=redis_url, COVERAGE_FILE=str(tmp_path / ".coverage"))
    html = tmp_path / "html"
    done = subprocess.run(
        [sys.executable, "scripts/runtests.py", "tests/unit/test_limits.py", "-q", f"--cov-report=html:{html}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = re.findall(r"^(\S+\.py) +\d+ +\d+ +\d+ +\d+ +(\d+)%", done.stdout, re.M)
    assert rows and all(int(percent) > 0 for _, percent in rows), done.stdout
    assert "realtime/management/commands/publish.py" not in done.stdout  # never imported by these tests
    assert "files it did not reach are left out" in done.stdout and "== coverage of this run" in done.stdout
    assert (html / "index.html").is_file()  # the HTML report still has every file
