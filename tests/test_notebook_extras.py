"""A notebook whose optional extra is missing is skipped with the install command (notebooks/conftest.py)."""

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _hooks():
    spec = importlib.util.spec_from_file_location("notebook_hooks", NOTEBOOKS / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Item(SimpleNamespace):
    def add_marker(self, marker):
        self.markers.append(marker)


def test_a_notebook_whose_extra_is_missing_is_skipped_with_the_install_command(monkeypatch):
    hooks = _hooks()
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed: find_spec raises
    items = [_Item(fspath=NOTEBOOKS / "08_lora_gpt2.ipynb", markers=[]), _Item(fspath=NOTEBOOKS / "07_improving_lora.ipynb", markers=[])]
    hooks.pytest_collection_modifyitems(None, items)
    assert len(items[0].markers) == 1 and not items[1].markers
    reason = items[0].markers[0].kwargs["reason"]
    assert "transformers" in reason and 'pip install -e ".[hf]"' in reason


def test_every_needed_extra_is_a_declared_one():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml with tomllib")
    extras = tomllib.loads((NOTEBOOKS.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for notebook, (_, extra) in _hooks().NEEDS.items():
        assert (NOTEBOOKS / notebook).is_file() and extra in extras
