"""The wheel of `realtime`: what it declares, and what it holds.

A project installs the app from a wheel (INTEGRATION.md section 1), so the wheel must hold
the whole app (every module, migration, command, template and static file) and nothing
else of this repository (an `accounts` or `project` of ours would shadow the project's own),
and its declared dependencies must be what the app imports, in ranges that the tested pins
of requirements.txt satisfy.
"""

from __future__ import annotations

import ast
import glob
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "realtime"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIN = re.compile(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==([^\s;#]+)")
# Modules that only a server of an extra imports (`uvicorn --ws realtime.server.uvicorn:...`):
# their module-level imports may come from that extra.
EXTRA_MODULES = {"server/uvicorn.py": "uvicorn"}
# What a project needs of the wheel beyond the Python modules (INTEGRATION.md section 1).
LANDMARKS = (
    "realtime/migrations/0001_initial.py",
    "realtime/management/commands/publish.py",
    "realtime/static/realtime/realtime.js",
    "realtime/static/realtime/realtime.d.ts",
    "realtime/templates/admin/realtime/connection/change_form.html",
)


def pins() -> dict[str, str]:
    """requirements.txt as {canonical name: pinned version}."""
    found = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            found[canonicalize_name(match[1])] = match[2]
    return found


def declared() -> list[Requirement]:
    """Every requirement of the distribution: its dependencies and each extra's."""
    project = PYPROJECT["project"]
    extras = project.get("optional-dependencies", {})
    return [Requirement(text) for text in [*project["dependencies"], *(r for rs in extras.values() for r in rs)]]


def source_files() -> list[Path]:
    """The files of the app's source tree that belong in a wheel (no bytecode caches)."""
    return sorted(p for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def checkout_files() -> list[str]:
    """The repository's files as a `pip install <checkout>` sees them: tracked, and new ones not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode()  # fmt: skip
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def build_wheel(workdir: Path) -> Path:
    """Build the wheel from a copy of the checkout in `workdir` (offline: `--no-isolation`, the
    setuptools of this virtualenv) and return its path. A copy, so that the build neither writes
    `build/` into the checkout nor picks up a stale one."""
    source = workdir / "source"
    for name in checkout_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    dist = workdir / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(source)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, f"the wheel did not build:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    (wheel,) = dist.glob("*.whl")
    return wheel


def test_each_requirement_is_met_by_the_tested_pin():
    """A range that excluded the pinned version would install a set the suite never ran."""
    pinned = pins()
    problems = []
    for requirement in declared():
        version = pinned.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement}: no pin in requirements.txt")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement}: the pin {version} is outside it")
    assert not problems, "\n".join(problems)


def imported_modules(path: Path) -> dict[str, set[str]]:
    """The top-level names a module imports, as {"eager": ..., "lazy": ...}: eager at module level
    (outside functions and `if TYPE_CHECKING:`), lazy inside functions only."""
    found: dict[str, set[str]] = {"eager": set(), "lazy": set()}

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # typing only: never imported at run time
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            names = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module]
            for name in names:
                found["lazy" if inner else "eager"].add(name.partition(".")[0])
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), lazy=False)
    found["lazy"] -= found["eager"]
    return found


def test_what_the_app_imports_is_declared():
    """Every third-party import of the app comes from a declared distribution: a dependency for an
    import at module level, an extra for one inside a function (a server adapter) or in a module
    only that extra's server loads. And the app imports nothing else of this repository: the
    wheel holds `realtime` alone."""
    distributions = importlib.metadata.packages_distributions()
    project = PYPROJECT["project"]
    dependencies = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    anywhere = {canonicalize_name(r.name) for r in declared()}
    problems = set()
    for path in PACKAGE.rglob("*.py"):
        module = path.relative_to(PACKAGE).as_posix()
        extra = project["optional-dependencies"].get(EXTRA_MODULES.get(module, ""), [])
        eager = dependencies | {canonicalize_name(Requirement(r).name) for r in extra}
        imports = imported_modules(path)
        for kind, allowed in (("eager", eager), ("lazy", anywhere)):
            for name in imports[kind] - set(sys.stdlib_module_names) - {"realtime"}:
                owners = {canonicalize_name(owner) for owner in distributions.get(name, [])}
                where = f"realtime/{module}, {kind}"
                if not owners:
                    problems.add(f"{name} ({where}): no installed distribution provides it, nor does the wheel")
                elif not owners & allowed:
                    problems.add(f"{name} ({where}): from {', '.join(sorted(owners))}, undeclared there")
    assert not problems, "\n".join(sorted(problems))


def test_every_directory_with_modules_is_a_package():
    """setuptools' package discovery skips a directory without `__init__.py`: its modules would be
    missing from the wheel though every test in this checkout imports them fine."""
    missing = sorted(
        str(directory.relative_to(ROOT))
        for directory in {path.parent for path in PACKAGE.rglob("*.py")}
        if "__pycache__" not in directory.parts and not (directory / "__init__.py").is_file()
    )
    assert not missing, f"directories of modules without __init__.py: {missing}"


def test_every_data_file_is_package_data():
    """A template or static file that no package-data pattern names is left out of the wheel."""
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["realtime"]
    covered = {Path(p) for pattern in patterns for p in glob.glob(str(PACKAGE / pattern), recursive=True)}
    data = [path for path in source_files() if path.suffix != ".py"]
    assert data, "the app has no data files: the pattern test would prove nothing"
    missing = [str(path.relative_to(ROOT)) for path in data if path not in covered]
    assert not missing, f"not matched by [tool.setuptools.package-data]: {missing}"


def test_the_wheel_holds_the_app_alone(tmp_path):
    with zipfile.ZipFile(build_wheel(tmp_path)) as wheel:
        names = set(wheel.namelist())
    top = {name.partition("/")[0] for name in names}
    (dist_info,) = (name for name in top if name.endswith(".dist-info"))
    assert top == {"realtime", dist_info}, f"top level of the wheel: {sorted(top)}"
    expected = {str(path.relative_to(ROOT)) for path in source_files() if path.suffix not in (".pyc", ".pyo")}
    assert expected - names == set(), f"left out of the wheel: {sorted(expected - names)}"
    assert set(LANDMARKS) <= names, f"missing: {sorted(set(LANDMARKS) - names)}"
