"""pytest's hooks for the notebooks (``pytest --nbval-lax notebooks``, part of ``bash scripts/test.sh``).

nbval executes the solved notebooks, ``notebooks/solutions/NN_name.ipynb``. The handouts beside this
file (``notebooks/NN_name.ipynb``) are not collected: their exercises are blank and raise
``NotImplementedError`` by design. They are made from the solved notebooks by
``python -m gpt classroom handouts`` and checked without a kernel by ``tests/teaching/test_handouts.py``
(each equals the generator's output; no cell outside an exercise uses what an exercise defines).
Named on the command line, a handout still runs (``pytest --nbval-lax notebooks/01_tokenization.ipynb``).

A notebook that needs an optional extra which this environment lacks is skipped, with the reason and
the install command, instead of failing: a plain ``pip install -e .`` (the core package) then gets a
green run that says what it did not test. ``bash scripts/setup.sh`` installs every extra.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

HANDOUTS = Path(__file__).resolve().parent
HANDOUT_NAME = re.compile(r"^\d\d_\w+\.ipynb$")

# notebook -> (the modules it cannot run without, the extra that installs them)
NEEDS = {"08_lora_gpt2.ipynb": (("transformers", "huggingface_hub"), "hf")}


def is_handout(path) -> bool:
    """True for ``notebooks/NN_name.ipynb`` (a handout), False for a solved notebook or anything else."""
    path = Path(path)
    return bool(HANDOUT_NAME.match(path.name)) and path.resolve().parent == HANDOUTS


def pytest_ignore_collect(collection_path, config):
    if is_handout(collection_path):
        return True
    return None  # let pytest and the other plugins decide


def missing_modules(modules) -> list[str]:
    """The modules of ``modules`` that cannot be imported here."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = Path(str(item.fspath)).name
        if name not in NEEDS:
            continue
        modules, extra = NEEDS[name]
        missing = missing_modules(modules)
        if missing:
            item.add_marker(pytest.mark.skip(reason=f"{name} needs the [{extra}] extra ({', '.join(missing)} not installed): "
                                                    f'pip install -e ".[{extra}]", or bash scripts/setup.sh'))
