import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers_*.py shared by tests in every folder

from gpt import sms  # noqa: E402  (after the path line, like the helpers)
from gpt.tokenizer import train_bpe  # noqa: E402
from helpers_tokenizer import CORPUS  # noqa: E402


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


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty download cache (GPT_DATA_DIR in a temporary folder)."""
    d = tmp_path / "cache"
    monkeypatch.setenv("GPT_DATA_DIR", str(d))
    return d


@pytest.fixture()
def splits(mirror_dir, tmp_path_factory, monkeypatch):
    """The pinned SMS splits, built from the mirror into a temporary data folder."""
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    monkeypatch.setenv("GPT_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    return sms.load_splits()


@pytest.fixture(scope="module")
def small_bpe():
    """A 320-token BPE trained on the test corpus (once per test module)."""
    return train_bpe(CORPUS, 320)
