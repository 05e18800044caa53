"""Token caches: written in one step, or only a warning when the disk refuses (the next run tokenizes again)."""

import errno
import os
import re

import numpy as np
import pytest

from gpt.data import tokenize_to_array
from gpt.errors import DataError
from gpt.io import token_cache
from helpers_data import Tok, fail_temp_writes, files_in


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty download cache."""
    d = tmp_path / "cache"
    monkeypatch.setenv("GPT_DATA_DIR", str(d))
    return d


@pytest.mark.parametrize("err, phrase", [(errno.ENOSPC, "is full"), (errno.EACCES, "cannot be written")])
def test_save_npy_fails_cleanly(err, phrase, cache, monkeypatch):
    path = cache / "cache" / "tokens.npy"
    fail_temp_writes(monkeypatch, OSError(err, os.strerror(err)))
    with pytest.raises(DataError, match=f"data cache {re.escape(str(cache))} {phrase}|{phrase}.*GPT_DATA_DIR"):
        token_cache.save_npy(path, np.arange(10))
    assert files_in(cache) == []  # the temporary file is gone
    with pytest.warns(RuntimeWarning, match="token cache not saved"):  # a cache that cannot be written only warns
        assert tokenize_to_array("Hello", Tok(), cache=path).tolist() == [1, 2, 3, 0]
    assert files_in(cache) == []


def test_save_npy_interrupted(tmp_path, monkeypatch):
    fail_temp_writes(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        token_cache.save_npy(tmp_path / "x.npy", np.arange(10))
    assert list(tmp_path.iterdir()) == []
