"""The layout holds: imports run one way (defs -> sync, warehouse -> source); a lean wheel."""

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from crm_assets_tests.conftest import REPO

PACKAGE = REPO / "crm_assets"
SANDBOX = REPO / "sandbox" / "crm_sandbox"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, by absolute name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _offenders(folder: Path, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in sorted(folder.rglob("*.py")):
        bad = sorted(
            name
            for name in _imports(path)
            if any(name == f or name.startswith(f + ".") for f in forbidden)
        )
        if bad:
            found[str(path.relative_to(REPO))] = bad
    return found


def test_the_source_imports_no_dagster_and_nothing_above_it() -> None:
    above = ("crm_assets.defs", "crm_assets.sync", "crm_assets.warehouse", "crm_assets.settings")
    forbidden = ("dagster", "dagster_dlt", "crm_assets.definitions", *above, "crm_sandbox")
    assert _offenders(PACKAGE / "source", forbidden) == {}


def test_sync_and_warehouse_never_import_the_dagster_definitions() -> None:
    forbidden = ("crm_assets.defs", "crm_assets.definitions", "crm_sandbox")
    assert _offenders(PACKAGE / "sync", forbidden) == {}
    assert _offenders(PACKAGE / "warehouse", forbidden) == {}


def test_the_product_never_imports_the_sandbox() -> None:
    assert _offenders(PACKAGE, ("crm_sandbox",)) == {}


def test_the_sandbox_api_is_a_crm_of_its_own() -> None:
    """Only the demo and the CLI-run helpers know the product; the fake API does not."""
    api_modules = {p for p in SANDBOX.glob("*.py") if p.stem not in ("demo", "runs")}
    assert api_modules
    for path in api_modules:
        assert not {n for n in _imports(path) if n.startswith("crm_assets")}, path.name


@pytest.mark.e2e
def test_the_product_wheel_holds_no_sandbox_code(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    skip = (".venv", ".git", "data", ".dagster", "__pycache__", "*.egg-info", "build", ".*cache")
    shutil.copytree(REPO, tree, ignore=shutil.ignore_patterns(*skip))
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    done = subprocess.run(
        [*pip_wheel, "-w", str(tmp_path / "dist"), str(tree)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("crm_assets-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next((n for n in names if n.endswith("entry_points.txt")), None)
        scripts = archive.read(entry_points).decode() if entry_points else ""
    assert {name.split("/")[0] for name in names} == {"crm_assets", "crm_assets-0.1.0.dist-info"}
    assert "crm_assets/definitions.py" in names
    assert [name for name in names if "sandbox" in name or "demo" in name] == []
    assert "crm-sandbox" not in scripts
