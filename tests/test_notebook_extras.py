"""notebooks/conftest.py: nbval runs the solved notebooks, not the handouts, and a notebook whose optional
extra is missing is skipped with the install command."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOLUTIONS = NOTEBOOKS / "solutions"


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
    items = [_Item(fspath=SOLUTIONS / "08_lora_gpt2.ipynb", markers=[]), _Item(fspath=SOLUTIONS / "07_improving_lora.ipynb", markers=[])]
    hooks.pytest_collection_modifyitems(None, items)
    assert len(items[0].markers) == 1 and not items[1].markers
    reason = items[0].markers[0].kwargs["reason"]
    assert "transformers" in reason and 'pip install -e ".[hf]"' in reason


def test_every_needed_extra_is_a_declared_one():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml with tomllib")
    extras = tomllib.loads((NOTEBOOKS.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for notebook, (_, extra) in _hooks().NEEDS.items():
        assert (SOLUTIONS / notebook).is_file() and extra in extras


def test_the_handouts_are_not_collected_and_the_solved_notebooks_are():
    hooks = _hooks()
    assert hooks.is_handout(NOTEBOOKS / "01_tokenization.ipynb") and not hooks.is_handout(SOLUTIONS / "01_tokenization.ipynb")
    assert not hooks.is_handout(NOTEBOOKS / "conftest.py") and not hooks.is_handout(NOTEBOOKS / "solutions")


def test_nbval_collects_exactly_the_solved_notebooks():
    """What `pytest --nbval-lax notebooks` (scripts/test.sh) will run: every solved notebook, no handout."""
    pytest.importorskip("nbval", reason='nbval is a dev tool: pip install -e ".[dev]"')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(NOTEBOOKS.parent), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "notebooks"], cwd=NOTEBOOKS.parent, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    collected = {line.split("::")[0] for line in done.stdout.splitlines() if "::" in line}
    assert collected == {f"notebooks/solutions/{p.name}" for p in sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))}
    assert len(collected) == 8
