"""The layers of docs/architecture.md hold, and the check that enforces them would catch a breach."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """import-linter over the package under tree/src, with tree/pyproject.toml's contracts."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_layer_contracts_hold():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "broken" not in done.stdout.lower().replace("0 broken", "")


@pytest.fixture(scope="module")
def copy_of_the_tree(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    shutil.copytree(
        ROOT / "src" / "openmvsep",
        tree / "src" / "openmvsep",
        ignore=shutil.ignore_patterns("__pycache__", "static", "catalog_data", "configs"),
    )
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("engine/_breach.py", "import openmvsep.service.jobs", "The engine and the Quality Checker"),
        ("quality/_breach.py", "from openmvsep.store import models", "The engine and the Quality Checker"),
        ("service/_breach.py", "from openmvsep.api import app", "Layers"),
        ("store/_breach.py", "from openmvsep.service import accounts", "Layers"),
        ("api/_breach.py", "from openmvsep.runner import worker", "Layers"),
        ("api/_breach2.py", "from openmvsep.engine import separator", "The HTTP entry points"),
        ("net/_breach.py", "from openmvsep.settings import Settings", "net is a standalone"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(copy_of_the_tree: Path, module: str, line: str, contract: str):
    breach = copy_of_the_tree / "src" / "openmvsep" / module
    breach.write_text(f'"""A throwaway module that imports across a layer."""\n{line}\n')
    try:
        done = lint_imports(copy_of_the_tree)
    finally:
        breach.unlink()
    assert done.returncode != 0, done.stdout
    broken = done.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken and module.replace("/", ".").removesuffix(".py") in broken, done.stdout


def test_the_api_process_imports_no_torch():
    """torch costs an API process seconds at start and the API image its weight; only workers need it."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import openmvsep.api.app, openmvsep.bootstrap, openmvsep.cli, sys; "
            "assert 'torch' not in sys.modules, 'torch was imported'",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
