"""Token caches: written in one step, or only a warning when the disk refuses (the next run tokenizes again)."""

import errno
import hashlib
import os
import re
import warnings

import numpy as np
import pytest

from gpt.data import tokenize_to_array
from gpt.errors import DataError
from gpt.io import token_cache
from helpers_data import Tok, fail_temp_writes, files_in


@pytest.mark.parametrize("err, phrase", [(errno.ENOSPC, "is full"), (errno.EACCES, "cannot be written")])
def test_save_npy_fails_cleanly(err, phrase, cache, monkeypatch):
    path = cache / "cache" / "tokens.npy"
    fail_temp_writes(monkeypatch, OSError(err, os.strerror(err)))
    with pytest.raises(DataError, match=f"data cache {re.escape(str(cache))} {phrase}|{phrase}.*GPT_DATA_DIR"):
        token_cache.save_npy(path, np.arange(10))
    assert files_in(cache) == []  # the temporary file is gone
    with pytest.warns(RuntimeWarning, match="token cache not saved"):  # a cache that cannot be written only warns
        assert token_cache.tokenize_with_cache("Hello", Tok(), path).tolist() == [1, 2, 3, 0]
    assert files_in(cache) == []


def test_save_npy_interrupted(tmp_path, monkeypatch):
    fail_temp_writes(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        token_cache.save_npy(tmp_path / "x.npy", np.arange(10))
    assert list(tmp_path.iterdir()) == []


def test_a_cache_changed_after_it_was_written_is_detected_and_rebuilt(tmp_path):
    """Every id set to one value: still valid token ids, so only the recorded sha256 can tell."""
    tok = Tok()
    path = tmp_path / "ids.npy"
    want = token_cache.tokenize_with_cache(["Hello", "there"], tok, path)
    assert token_cache.hash_path(path).read_text().strip() == hashlib.sha256(path.read_bytes()).hexdigest()
    np.save(path, np.full_like(want, 3))  # every id set to one valid id (Tok has 4 tokens; the course's 7)
    with pytest.warns(RuntimeWarning, match=rf"token cache {re.escape(str(path))} does not match its recorded sha256 \(it has [0-9a-f]{{12}}\.\.\., "
                                            rf"ids.npy.sha256 records [0-9a-f]{{12}}\.\.\.: changed after it was written\); rebuilding it"):
        assert token_cache.tokenize_with_cache(["Hello", "there"], tok, path).tolist() == want.tolist()
    assert np.load(path).tolist() == want.tolist()  # rebuilt, and verified from now on
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert token_cache.load_token_cache(path, tok.n_vocab).tolist() == want.tolist()


def test_a_cache_without_a_recorded_sha256_is_rebuilt(tmp_path):
    tok = Tok()
    path = tmp_path / "ids.npy"
    want = token_cache.tokenize_with_cache("Hello", tok, path)
    token_cache.hash_path(path).unlink()  # a cache written before sha256s were recorded, or cut short
    with pytest.warns(RuntimeWarning, match=r"has no recorded sha256 \(ids.npy.sha256 is missing or unreadable: an older cache, or a write cut short\); rebuilding it"):
        assert token_cache.tokenize_with_cache("Hello", tok, path).tolist() == want.tolist()
    assert token_cache.hash_path(path).exists()


class _CountingTokenizer:
    """Wraps a tiktoken Encoding and counts encode calls."""

    def __init__(self, enc):
        self.enc, self.calls = enc, 0
        self.eot_token, self.n_vocab = enc.eot_token, enc.n_vocab

    def encode_ordinary(self, text):
        self.calls += 1
        return self.enc.encode_ordinary(text)


def test_tokenize_with_cache_tokenizes_once(tmp_path):
    from gpt.tokenizer import course_tokenizer

    enc = course_tokenizer()
    tok = _CountingTokenizer(enc)
    texts = ["Hello there.", "General Kenobi!"]
    want = enc.encode_ordinary(texts[0]) + [enc.eot_token] + enc.encode_ordinary(texts[1]) + [enc.eot_token]
    ids = tokenize_to_array(texts, tok)
    assert ids.tolist() == want and ids.dtype == np.uint16
    cache = tmp_path / "c" / "ids.npy"
    assert token_cache.tokenize_with_cache(texts, tok, cache).tolist() == want
    assert cache.exists() and tok.calls == 4
    # the second call loads the cache and does not tokenize
    assert token_cache.tokenize_with_cache(texts, tok, cache).tolist() == want
    assert tok.calls == 4
    assert sorted(p.name for p in cache.parent.iterdir()) == ["ids.npy", "ids.npy.sha256"]  # the cache and its recorded sha256


@pytest.mark.parametrize(
    "damage",
    [b"", b"not a numpy file", "truncate", np.zeros((2, 3), np.uint16), np.ones(6), np.array([10**6], np.uint32)],
    ids=["empty", "garbage", "truncated", "2d", "float", "id_beyond_vocab"],
)
def test_tokenize_with_cache_rebuilds_a_damaged_cache(damage, tmp_path):
    from gpt.tokenizer import course_tokenizer

    enc = course_tokenizer()
    want = tokenize_to_array("Hello there.", enc)
    path = tmp_path / "ids.npy"
    if isinstance(damage, bytes):
        path.write_bytes(damage)
    elif isinstance(damage, str):
        np.save(path, np.arange(1000, dtype=np.uint16))
        path.write_bytes(path.read_bytes()[:300])
    else:
        np.save(path, damage)
    with pytest.warns(RuntimeWarning, match=f"token cache {re.escape(str(path))} is damaged"):
        assert token_cache.tokenize_with_cache("Hello there.", enc, path).tolist() == want.tolist()
    assert np.load(path).tolist() == want.tolist()
