"""The coverage figures `scripts/runtests.py` prints at the end of a run, and its fail-under rule.

From the run's combined coverage data (coverage.py's JSON report of it, with each line's
contexts): lines, branches, functions (those with a statement of which at least one ran),
and the share of the server code (project/, accounts/, realtime/) that the server
processes of the end-to-end and browser tests ran: their measurements carry the static
context `e2e` (tests/e2e/servers.py, `mark_coverage`).

No sibling imports: the tests import it as `scripts.coverage_figures`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import coverage

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "pyproject.toml"
# The full run's table (pytest-cov's); a part of the suite gets `print_table` of the files it ran instead.
FULL_TABLE = "--cov-report=term-missing:skip-covered"
# The server code, whose share the end-to-end runs reached is the fourth figure (not tests/, not clients/).
SERVER_CODE = ("project", "accounts", "realtime")
E2E_CONTEXT = "e2e"  # the static coverage context of the end-to-end servers (tests/e2e/servers.py)
# pytest options that select a part of the suite (as do test paths): the 90 % gate is for the whole.
SUBSET_OPTIONS = ("-k", "-m", "--lf", "--last-failed", "--deselect")


@dataclass(frozen=True)
class Share:
    """`covered` of `total` (lines, branches, functions)."""

    covered: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.covered / self.total if self.total else 100.0

    def __str__(self) -> str:
        return f"{self.percent:5.1f} %  ({self.covered} of {self.total})"


@dataclass(frozen=True)
class Figures:
    """What a run's coverage data says, as `print_figures` shows it."""

    lines: Share
    branches: Share
    functions: Share  # functions with statements, of which at least one line ran
    e2e_server: Share  # statements of the server code that a server process of an end-to-end test ran
    gate: float  # lines and branches together: the figure `--cov-fail-under` compares


def load(data_file: Path, config_file: Path = CONFIG) -> coverage.Coverage:
    """A combined data file, loaded under the project's coverage configuration."""
    cov = coverage.Coverage(data_file=str(data_file), config_file=str(config_file))
    cov.load()
    return cov


def coverage_report(data_file: Path, config_file: Path = CONFIG) -> dict:
    """coverage.py's JSON report (with each line's contexts) of a combined data file."""
    with tempfile.TemporaryDirectory(prefix="rt-cov-") as tmp:
        out = Path(tmp) / "coverage.json"
        load(data_file, config_file).json_report(outfile=str(out), show_contexts=True)
        return json.loads(out.read_text())


def functions_of(measured: dict) -> list[dict]:
    """The function regions of one file of a JSON report that have statements (not the module's own code)."""
    if "functions" not in measured:
        raise RuntimeError(f"coverage {coverage.__version__} reports no functions; requirements-dev.txt pins one")
    return [region for name, region in measured["functions"].items() if name and region["summary"]["num_statements"]]


def touched_files(report: dict) -> list[str]:
    """The files of a JSON report of which a function ran (without functions: a line); not those only imported."""
    return [
        filename
        for filename, measured in report["files"].items()
        if any(region["summary"]["covered_lines"] for region in functions_of(measured) or [measured])
    ]


def print_table(data_file: Path, files: list[str], measured: int, config_file: Path = CONFIG) -> None:
    """coverage.py's terminal table (missing lines; fully covered files skipped) of `files` only, of `measured`."""
    left_out = measured - len(files)
    print(f"== coverage of the files this part of the suite ran ({left_out} files it did not reach are left out)")
    if files:  # an empty list would mean every file to coverage.py
        load(data_file, config_file).report(morfs=files, show_missing=True, skip_covered=True, file=sys.stdout)


def is_server_code(filename: str, root: Path) -> bool:
    """True for a file of the Django project under `root` (a report's names are relative to the cwd)."""
    path = (Path.cwd() / filename).resolve()
    return path.is_relative_to(root.resolve()) and path.relative_to(root.resolve()).parts[0] in SERVER_CODE


def figures(report: dict, root: Path = ROOT) -> Figures:
    """The four figures of a JSON report (`coverage_report`); functions come from its per-file regions."""
    totals = report["totals"]
    functions = [0, 0]
    e2e = [0, 0]
    for filename, measured in report["files"].items():
        for region in functions_of(measured):
            functions[0] += region["summary"]["covered_lines"] > 0
            functions[1] += 1
        if is_server_code(filename, root):
            contexts = measured.get("contexts", {})
            e2e[0] += sum(1 for line in measured["executed_lines"] if E2E_CONTEXT in contexts.get(str(line), ()))
            e2e[1] += measured["summary"]["num_statements"]
    return Figures(
        lines=Share(totals["covered_lines"], totals["num_statements"]),
        branches=Share(totals.get("covered_branches", 0), totals.get("num_branches", 0)),
        functions=Share(*functions),
        e2e_server=Share(*e2e),
        gate=totals["percent_covered"],
    )


def print_figures(found: Figures) -> None:
    print("== coverage of this run")
    print(f"   lines      {found.lines}")
    print(f"   branches   {found.branches}")
    print(f"   functions  {found.functions}   (at least one line ran)")
    if found.e2e_server.covered:
        print(f"   e2e        {found.e2e_server}   (server code that the end-to-end servers ran)")
    else:
        print("   e2e        no end-to-end server ran in this run")
    print(f"   lines and branches together: {found.gate:.1f} % (the fail-under gate compares this)", flush=True)


def selects_subset(argv: list[str]) -> bool:
    """True when the pytest arguments run a part of the suite: a test path, or a selecting option."""
    whole = {ROOT.resolve(), (ROOT / "tests").resolve()}
    for arg in argv:
        if arg.split("=", 1)[0] in SUBSET_OPTIONS or arg[:2] in ("-k", "-m"):  # also `-kexpr`, `--deselect=id`
            return True
        path = ROOT / arg.split("::")[0]
        if not arg.startswith("-") and path.exists() and (path.resolve() not in whole or "::" in arg):
            return True
    return False


def coverage_arguments(argv: list[str]) -> list[str]:
    """pytest arguments before `argv`: the whole suite gets the full table; a subset no fail-under gate,
    unless `argv` sets one (its table is `print_table`'s, after the run)."""
    if not selects_subset(argv):
        return [FULL_TABLE]
    if not any(arg.startswith("--cov-fail-under") for arg in argv):
        print("A part of the suite: the 90 % coverage gate applies to the whole run only.")
        return ["--cov-fail-under=0"]
    return []


def report_coverage(argv: list[str], started: float) -> None:
    """Print the figures (for a subset, after the table of the files it ran) when this run measured
    coverage and wrote the data file."""
    data_file = ROOT / os.environ.get("COVERAGE_FILE", ".coverage")
    if "--no-cov" in argv or not data_file.is_file() or data_file.stat().st_mtime < started:
        return
    report = coverage_report(data_file)
    if selects_subset(argv):
        print_table(data_file, touched_files(report), len(report["files"]))
    print_figures(figures(report))
