"""Every module of the package states its one job in a docstring, and the wheel adds no generic top-level name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.architecture.test_layers import modules

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_has_a_docstring():
    missing = [name for name, path in modules().items()
               if path.read_text().strip() and not ast.get_docstring(ast.parse(path.read_text()))]
    assert not missing, f"modules without a docstring: {missing}"


def test_the_wheel_installs_only_the_onnxprune_namespace():
    """pyproject lists packages explicitly; each one is onnxprune or below it, and every sub-package on disk is
    listed (so nothing is left out of the wheel either)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    assert set(config["package-dir"].values()) <= {"onnxprune", "op_handlers", "models"}
    assert listed and all(name == "onnxprune" or name.startswith("onnxprune.") for name in listed)
    packages = {name for name, path in modules().items() if path.name == "__init__.py"}
    assert packages == listed, (packages - listed, listed - packages)
