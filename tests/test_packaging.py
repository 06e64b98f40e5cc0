"""Packaging habits: the licence, the single-sourced version, the extras, and the static checks
(ruff's settings match python_requires; mypy is clean with pyproject.toml's settings)."""

from __future__ import annotations

import configparser
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import simalloc

ROOT = Path(__file__).resolve().parents[1]


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def _pyproject() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    with (ROOT / "pyproject.toml").open("rb") as f:
        doc: dict[str, Any] = tomllib.load(f)
    return doc


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_license_is_mit() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the simalloc authors" in text
    assert _setup_cfg()["metadata"]["license"] == "MIT"


def test_version_is_single_sourced() -> None:
    assert _setup_cfg()["metadata"]["version"] == "attr: simalloc.__version__"
    assert simalloc.__version__.count(".") == 2
    src = (ROOT / "simalloc" / "__init__.py").read_text()
    assert src.count(simalloc.__version__) == 1  # written once


def test_matplotlib_is_an_extra() -> None:
    opts = _setup_cfg()
    install = _lines(opts["options"]["install_requires"])
    assert "matplotlib" not in install and "numpy" in install
    extras = opts["options.extras_require"]
    assert _lines(extras["plot"]) == ["matplotlib"]
    test = _lines(extras["test"])
    assert "matplotlib" in test and "ruff" in test and "mypy" in test


def test_plotting_imports_matplotlib_lazily() -> None:
    """Importing every simalloc module does not import matplotlib (``simalloc ab`` works
    without it)."""
    code = ("import sys, simalloc, simalloc.cli, simalloc.experiments, simalloc.experiments.ab; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=120, cwd=ROOT).stdout.strip()
    assert out == "False"


def test_tool_settings_match_python_requires() -> None:
    assert _setup_cfg()["options"]["python_requires"] == ">=3.10"
    doc = _pyproject()["tool"]
    assert doc["ruff"]["target-version"] == "py310"
    assert isinstance(doc["ruff"]["line-length"], int)
    assert "E501" not in doc["ruff"]["lint"].get("ignore", [])  # the line length is enforced
    assert doc["mypy"]["python_version"] == "3.10"
    assert doc["mypy"]["packages"] == ["simalloc"]


def test_mypy_clean() -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy not installed (it is in the test extra)")
    proc = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
