import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers_*.py shared by tests in every folder


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def mirror_dir() -> Path:
    """The local data mirror (GPT_DATA_MIRROR if it is a folder, else ../shared/data)."""
    m = os.environ.get("GPT_DATA_MIRROR")
    path = Path(m) if m and "://" not in m else SHARED
    if not path.is_dir():
        pytest.skip(f"no local data mirror at {path}")
    return path
