"""How openmvsep is installed and started: the Makefile's two install paths, `python -m openmvsep`, and the one
place the version is written."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import openmvsep

ROOT = Path(__file__).resolve().parents[1]

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def planned(workdir: Path, target: str, *flags: str) -> list[str]:
    """The commands `make TARGET` would run in WORKDIR (nothing is run)."""
    out = subprocess.run(
        ["make", "-n", *flags, target], cwd=workdir, capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return out.splitlines()


def pip_lines(commands: list[str]) -> list[str]:
    return [c for c in commands if "pip install" in c]


@pytest.fixture
def makefile_copy(tmp_path: Path) -> Path:
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


@needs_make
def test_make_run_installs_without_the_test_extras(makefile_copy):
    installs = pip_lines(planned(makefile_copy, "run", "-B"))
    assert installs
    assert not any("[test]" in line for line in installs), installs
    assert any("-e ." in line for line in installs)
    # The Quality Checker's log-WMSE needs this one at run time, not only in the tests.
    assert any("--no-deps" in line and "torch-log-wmse==0.3.1" in line for line in installs)
    # The transcribers' models ship in these wheels, whose own pins would pull TensorFlow and training tools.
    assert any("--no-deps" in line and "basic-pitch==0.4.0" in line and "transkun==2.0.1" in line for line in installs)
    assert all("-c constraints.txt" in line for line in installs), installs


@needs_make
def test_make_test_adds_the_test_extras(makefile_copy):
    installs = pip_lines(planned(makefile_copy, "test", "-B"))
    assert any("-e '.[test]'" in line for line in installs), installs
    assert all("-c constraints.txt" in line for line in installs), installs


@needs_make
def test_installs_are_redone_only_when_the_declared_dependencies_change(makefile_copy):
    venv = makefile_copy / ".venv"
    venv.mkdir()
    run_stamp, test_stamp = venv / ".installed-run", venv / ".installed-test"
    run_stamp.touch()
    test_stamp.touch()
    old = os.stat(run_stamp).st_mtime - 100
    for name in ("pyproject.toml", "constraints.txt"):
        os.utime(makefile_copy / name, (old, old))

    assert pip_lines(planned(makefile_copy, "run")) == []
    assert pip_lines(planned(makefile_copy, "test")) == []

    os.utime(makefile_copy / "constraints.txt")  # newer than both stamps
    assert not any("[test]" in line for line in pip_lines(planned(makefile_copy, "run")))
    assert any("[test]" in line for line in pip_lines(planned(makefile_copy, "test")))


def test_python_dash_m_openmvsep_is_the_cli():
    r = subprocess.run([sys.executable, "-m", "openmvsep", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "serve" in r.stdout


def test_the_version_is_written_once(harness):
    assert openmvsep.__version__ == importlib.metadata.version("openmvsep")
    assert harness.client.get("/openapi.json").json()["info"]["version"] == openmvsep.__version__


def test_the_package_says_it_is_typed():
    assert (Path(openmvsep.__file__).parent / "py.typed").is_file()
