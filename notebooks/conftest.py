"""pytest's hooks for the notebooks (``pytest --nbval-lax notebooks``, part of ``bash scripts/test.sh``).

A notebook that needs an optional extra which this environment lacks is skipped, with the reason and
the install command, instead of failing: a plain ``pip install -e .`` (the core package) then gets a
green run that says what it did not test. ``bash scripts/setup.sh`` installs every extra.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# notebook -> (the modules it cannot run without, the extra that installs them)
NEEDS = {"08_lora_gpt2.ipynb": (("transformers", "huggingface_hub"), "hf")}


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
