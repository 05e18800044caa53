"""gpt.io.corpus: the pretraining corpus tokenized once, cached, split per book; a damaged cache is rebuilt."""

import numpy as np
import pytest

import gpt.data as data
from gpt.data import split_ids, tokenize_to_array
from gpt.errors import ConfigError
from gpt.io.corpus import load_pretraining_ids
from gpt.io.downloads import REGISTRY
from gpt.io.token_cache import corpus_token_cache
from helpers_data import fake_mirror

TINY_BOOK = b"header\n*** START OF A TINY BOOK ***\nOne two three four five six seven eight nine ten.\n*** END OF IT ***\n"


def test_load_pretraining_ids_split_per_book(mirror_dir, cache, monkeypatch):
    from gpt.tokenizer import course_tokenizer

    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    enc = course_tokenizer()
    books = ["pg35", "pg84"]
    train, val = load_pretraining_ids(enc, books, val_fraction=0.1)
    parts = [tokenize_to_array(data.load_book(b), enc) for b in books]
    cuts = [int(len(p) * 0.9) for p in parts]
    assert np.array_equal(train, np.concatenate([p[:c] for p, c in zip(parts, cuts)]))
    assert np.array_equal(val, np.concatenate([p[c:] for p, c in zip(parts, cuts)]))
    # cached: a second call reads the token file, even with the books gone from the mirror
    monkeypatch.setenv("GPT_DATA_MIRROR", str(cache / "nowhere"))
    for b in books:
        (cache / REGISTRY[b].relpath).unlink()
    train2, val2 = load_pretraining_ids(enc, books, val_fraction=0.1)
    assert np.array_equal(train, train2) and np.array_equal(val, val2)
    with pytest.raises(ConfigError, match="val_fraction must be a finite number in \\(0, 1\\)"):
        load_pretraining_ids(enc, books, val_fraction=0.0)


@pytest.fixture
def tiny_book(tmp_path, cache, monkeypatch):
    """pg35 replaced by a 13-token book in a fake mirror (fast to tokenize)."""
    fake_mirror(tmp_path, monkeypatch, "pg35", TINY_BOOK)
    from gpt.tokenizer import course_tokenizer

    return course_tokenizer()


@pytest.mark.parametrize("val_fraction, phrase", [(1e-20, "no validation tokens"), (0.95, "no training tokens")])
def test_val_fraction_leaves_a_book_empty(val_fraction, phrase, tiny_book):
    with pytest.raises(ConfigError, match=f"val_fraction {val_fraction!r} leaves pg35 \\(13 tokens\\) with {phrase}"):
        load_pretraining_ids(tiny_book, ["pg35"], val_fraction=val_fraction)
    with pytest.raises(ConfigError, match=phrase):
        split_ids(np.arange(12), val_fraction)


def test_load_pretraining_ids_tiny_book(tiny_book):
    train, val = load_pretraining_ids(tiny_book, ["pg35"], val_fraction=0.25)
    assert len(train) == 9 and len(val) == 4 and val[-1] == tiny_book.eot_token


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage", "float", "offsets"])
def test_load_pretraining_ids_damaged_cache_is_rebuilt(damage, tiny_book):
    want = load_pretraining_ids(tiny_book, ["pg35"], val_fraction=0.25)
    path = corpus_token_cache(["pg35"], tiny_book, tag="per-book-v2")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-5])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(b"not a numpy file")
    elif damage == "float":
        np.save(path, np.ones(12))
    else:
        np.save(path.with_suffix(".offsets.npy"), np.array([0, 5]))
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        got = load_pretraining_ids(tiny_book, ["pg35"], val_fraction=0.25)
    assert all(np.array_equal(a, b) for a, b in zip(want, got))
    assert np.array_equal(np.load(path), np.concatenate(want))  # the file is whole again
