"""The coverage figures of scripts/runtests.py, from real coverage data of a tiny project.

The project in a temporary directory has server code (`realtime/`) and other code
(`clients/`). One process runs part of it as an end-to-end server would (static context
`e2e`), another as the tests would (no context); `coverage combine` joins them as
pytest-cov does. The expected figures are counted by hand from the sources below.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from coverage.config import CoverageConfig

from scripts.coverage_figures import (
    coverage_arguments,
    coverage_report,
    figures,
    print_table,
    selects_subset,
    touched_files,
)
from tests.e2e.servers import COVERAGE_CONTEXT, mark_coverage

pytestmark = pytest.mark.unit

SOURCES = {
    # 9 statements (a docstring is none), 2 branches (line 2), 3 functions with statements.
    "realtime/mod.py": '''
        def served(flag):
            if flag:
                return "yes"
            return "no"


        def tested():
            return "tested"


        def never():
            return "never"


        def documented_only():
            """No statements: not counted as a function."""
    ''',
    # 4 statements, 2 functions.
    "clients/lib.py": """
        def helper():
            return 1


        def unused():
            return 2
    """,
    # The drivers: outside `source`, not measured.
    "serve.py": """
        from realtime import mod

        mod.served(True)
    """,
    "tests.py": """
        from clients import lib
        from realtime import mod

        mod.tested()
        lib.helper()
    """,
    ".coveragerc": """
        [run]
        branch = true
        source = realtime, clients
        parallel = true
    """,
}


# For a part of the suite: a module that is imported but none of whose functions runs, and one never imported.
IDLE = {
    "realtime/idle.py": """
        def idle():
            return 0
    """,
    "realtime/unused.py": """
        def unused():
            return 0
    """,
    "tests.py": SOURCES["tests.py"] + "    from realtime import idle\n",
}


def measure(tmp: Path, *, server: bool = True, extra: dict[str, str] | None = None) -> Path:
    """Run the drivers under coverage (the server one, unless not `server`, with the `e2e` context) and
    combine them; the data file. `extra`: sources added to (or replacing) SOURCES."""
    for name, text in {**SOURCES, **(extra or {})}.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    # Not measured by this run's own coverage (its subprocess patch would start it in the children too).
    env = {key: value for key, value in os.environ.items() if not key.startswith("COVERAGE_")}
    coverage = [sys.executable, "-m", "coverage"]
    runs = [["run", f"--context={COVERAGE_CONTEXT}", "serve.py"]] if server else []
    for args in [*runs, ["run", "tests.py"], ["combine", "-q"]]:
        subprocess.run([*coverage, *args], cwd=tmp, env=env, check=True)
    return tmp / ".coverage"


def test_the_four_figures_of_a_real_data_set(tmp_path):
    found = figures(coverage_report(measure(tmp_path), tmp_path / ".coveragerc"), root=tmp_path)
    # mod.py ran 1 2 3 7 8 11 15 (not 4, 12); lib.py ran 1 2 5 (not 6).
    assert (found.lines.covered, found.lines.total) == (10, 13)
    assert (found.branches.covered, found.branches.total) == (1, 2)  # 2->3 ran, 2->4 did not
    # served, tested, helper ran; never, unused did not; documented_only has no statement.
    assert (found.functions.covered, found.functions.total) == (3, 5)
    # The server run reached mod.py's 1 2 3 7 11 15 (its defs, and served(True)); lib.py is not server code.
    assert (found.e2e_server.covered, found.e2e_server.total) == (6, 9)
    assert found.gate == pytest.approx(100 * 11 / 15)
    assert str(found.functions) == " 60.0 %  (3 of 5)"


def test_without_end_to_end_data_the_server_share_is_zero(tmp_path):
    found = figures(coverage_report(measure(tmp_path, server=False), tmp_path / ".coveragerc"), root=tmp_path)
    assert (found.e2e_server.covered, found.e2e_server.total) == (0, 9)
    assert (found.lines.covered, found.lines.total) == (8, 13)  # served() never ran: 2 3 4 missing too


def test_a_part_of_the_suite_tables_only_the_files_it_ran(tmp_path, capsys):
    data, config = measure(tmp_path, extra=IDLE), tmp_path / ".coveragerc"
    report = coverage_report(data, config)
    # mod.py and lib.py ran a function each; idle.py was only imported, unused.py not even that.
    assert sorted(Path(name).name for name in report["files"]) == ["idle.py", "lib.py", "mod.py", "unused.py"]
    touched = touched_files(report)
    assert sorted(Path(name).name for name in touched) == ["lib.py", "mod.py"]
    print_table(data, touched, len(report["files"]), config)
    out = capsys.readouterr().out
    assert re.search(r"mod\.py +9 +2 ", out) and re.search(r"lib\.py +4 +1 ", out)  # statements, missed
    assert "idle" not in out and "unused" not in out and "2 files" in out  # the two left out, counted


def test_server_processes_measure_under_the_e2e_context():
    config = CoverageConfig()
    config.branch = True
    env = {"COVERAGE_PROCESS_CONFIG": config.serialize()}
    mark_coverage(env)
    marked = CoverageConfig.deserialize(env["COVERAGE_PROCESS_CONFIG"])
    assert (marked.context, marked.branch) == (COVERAGE_CONTEXT, True)
    unmeasured: dict[str, str] = {}
    mark_coverage(unmeasured)  # the benchmark's servers, `--no-cov`: nothing to mark
    assert unmeasured == {}


@pytest.mark.parametrize(
    ("argv", "subset"),
    [
        ([], False),
        (["--cov-report=html:htmlcov-postgres"], False),
        (["tests"], False),
        (["-x", "-p", "no:randomly"], False),
        (["tests/unit"], True),
        (["tests/e2e/test_smoke.py::test_x"], True),
        (["tests::x"], True),
        (["-k", "healthz", "-x"], True),
        (["-khealthz"], True),
        (["-m", "unit"], True),
        (["--lf"], True),
        (["--deselect=tests/unit/test_conf.py::t"], True),
    ],
)
def test_a_subset_is_told_from_the_whole_suite(argv, subset):
    assert selects_subset(argv) is subset


def test_only_the_whole_suite_gets_the_full_table():
    # pytest-cov's table lists every measured file short of 100 %: right for the whole suite only.
    assert coverage_arguments(["-x"]) == ["--cov-report=term-missing:skip-covered"]
    assert coverage_arguments(["tests/unit"]) == ["--cov-fail-under=0"]
    assert coverage_arguments(["tests/unit", "--cov-fail-under=50"]) == []
