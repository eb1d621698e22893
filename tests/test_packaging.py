"""A clean install prints no packaging warning: setuptools builds the wheel and the editable
wheel (what `pip install .` and `pip install -e .` build) of a copy of the checkout without a
warning, and the wheel carries the report template."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD = """
import sys
from setuptools import build_meta
print(build_meta.build_wheel(sys.argv[1]))
print(build_meta.build_editable(sys.argv[1]))
"""


@pytest.mark.timeout(300)
def test_wheel_and_editable_build_without_warnings(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("pose_core", "orchestrator", "search_spaces"):
        shutil.copytree(REPO / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    done = subprocess.run([sys.executable, "-W", "always", "-c", BUILD, str(out)], cwd=source,
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout + done.stderr
    # Not packaging warnings: setuptools says "Editable installation" (InformationOnly) on
    # every editable build, and distutils that byte-compiling is off where the test runner
    # turned it off (PYTHONDONTWRITEBYTECODE).
    quiet = ("InformationOnly", "byte-compiling is disabled")
    warnings = [line for line in text.splitlines()
                if "warn" in line.lower() and not any(q in line for q in quiet)]
    assert not warnings, warnings
    assert "absent from the `packages` configuration" not in text
    wheel = next(out.glob("posetune-*-py3-none-any.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "orchestrator/report/templates/report.html.j2" in names
