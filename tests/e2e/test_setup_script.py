"""scripts/setup.sh installs only when pyproject.toml changed, per set of extras (tiny project)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SETUP = Path(__file__).resolve().parents[2] / "scripts" / "setup.sh"
PYPROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "setup-probe"
version = "{version}"

[project.optional-dependencies]
test = []

[tool.setuptools]
py-modules = ["probe"]
"""


def _project(folder: Path) -> Path:
    (folder / "scripts").mkdir(parents=True)
    shutil.copy(SETUP, folder / "scripts" / "setup.sh")
    (folder / "pyproject.toml").write_text(PYPROJECT.format(version="0.1"))
    (folder / "probe.py").write_text('"""Installed by the test."""\n')
    return folder


def _setup(folder: Path, *args: str) -> str:
    result = subprocess.run(
        ["bash", "scripts/setup.sh", *args],
        cwd=folder,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(folder)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_setup_installs_once_then_only_when_pyproject_changes(tmp_path):
    project = _project(tmp_path / "project")
    first = _setup(project)
    assert "[setup] creating .venv" in first and "installing mentorship (.[test])" in first
    assert (project / ".venv" / ".installed-test").is_file()

    again = _setup(project)
    assert "up to date" in again and "[setup] installing" not in again
    # the demo's install (without test tools) is contained in the test install
    runtime = _setup(project, "--runtime")
    assert "up to date" in runtime and "[setup] installing" not in runtime

    (project / "pyproject.toml").write_text(PYPROJECT.format(version="0.2"))
    changed = _setup(project, "--runtime")
    assert "installing mentorship (.)" in changed and "[setup] done" in changed
    assert "up to date" in _setup(project, "--runtime")
    assert "installing mentorship (.[test])" in _setup(project)
