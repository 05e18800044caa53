"""Data for pretraining: the books stripped, token ids and their cache, token windows, and bad arguments."""

import re

import numpy as np
import pytest
import torch

import gpt.data as data
from gpt.data import TokenWindowDataset, create_dataloader, split_ids, strip_gutenberg, tokenize_to_array
from gpt.errors import ConfigError, DataError
from gpt.io.corpus import load_pretraining_ids
from gpt.io.downloads import PRETRAIN_BOOKS
from gpt.io.token_cache import corpus_token_cache
from helpers_data import Tok


BOOK = "\n".join(
    [
        "The Project Gutenberg eBook of Something",
        "header line",
        "*** START OF THE PROJECT GUTENBERG EBOOK SOMETHING ***",
        "",
        "Chapter 1",
        "The text of the book.",
        "",
        "*** END OF THE PROJECT GUTENBERG EBOOK SOMETHING ***",
        "licence footer",
    ]
)


def test_strip_gutenberg():
    assert strip_gutenberg(BOOK) == "Chapter 1\nThe text of the book.\n"


def test_strip_gutenberg_without_end_marker():
    no_end = BOOK.split("*** END")[0] + "more text at the end\n"
    assert strip_gutenberg(no_end) == "Chapter 1\nThe text of the book.\n\nmore text at the end\n"


def test_strip_gutenberg_indented_end_marker():
    # pg35 (The Time Machine) indents its END marker; the licence after it must not leak into the corpus
    indented = BOOK.replace("*** END OF", "            *** END OF")
    assert strip_gutenberg(indented) == "Chapter 1\nThe text of the book.\n"


def test_strip_gutenberg_without_start_marker():
    with pytest.raises(DataError, match="pg999: no '\\*\\*\\* START OF'"):
        strip_gutenberg("just some text\n*** END OF IT ***\n", "pg999")


def test_real_books_are_stripped(mirror_dir, cache, monkeypatch):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    # pg35: CRLF, both markers; pg47: BOM and no END marker
    time_machine = data.load_book("pg35")
    assert "\r" not in time_machine and "Project Gutenberg" not in time_machine[:2000]
    assert "The Time Traveller" in time_machine[:5000]
    assert "*** END" not in time_machine and "Project Gutenberg License" not in time_machine
    avonlea = data.load_book("pg47")
    assert not avonlea.startswith("\ufeff") and "*** START" not in avonlea
    assert avonlea.startswith("Produced by") and avonlea.endswith("the echoes bided their time.\n")


def test_every_book_is_stripped(mirror_dir, cache, monkeypatch):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    texts = data.load_pretraining_texts()
    assert list(texts) == PRETRAIN_BOOKS
    for name, text in texts.items():
        for marker in ("*** START OF", "*** END OF", "FULL LICENSE", "Project Gutenberg License", "\r", "\ufeff"):
            assert marker not in text, f"{name}: {marker!r} left in the text"
        assert len(text) > 150_000, name


def test_strip_gutenberg_empty_book():
    with pytest.raises(DataError, match="pg1: no text between"):
        strip_gutenberg("*** START OF X ***\n\n  \n*** END OF X ***\nlicence\n", "pg1")


def test_token_windows_non_overlapping():
    ids = np.arange(21)
    ds = TokenWindowDataset(ids, context_length=4)
    assert len(ds) == 5  # starts 0, 4, 8, 12, 16 (the last needs tokens 16..20)
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.tolist() == list(range(4 * i, 4 * i + 4))
        assert y.tolist() == list(range(4 * i + 1, 4 * i + 5))  # targets are the inputs shifted by one
        assert x.dtype == torch.int64
    with pytest.raises(IndexError):
        ds[5]
    assert ds[-1][0].tolist() == ds[4][0].tolist()


def test_token_windows_stride():
    ds = TokenWindowDataset(np.arange(10), context_length=4, stride=2)
    assert len(ds) == 3  # starts 0, 2, 4
    assert [ds[i][0].tolist() for i in range(3)] == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]
    assert ds[2][1].tolist() == [5, 6, 7, 8]
    assert len(TokenWindowDataset(np.arange(10), 4, stride=1)) == 6
    assert len(TokenWindowDataset(np.arange(5), 4)) == 1  # exactly context + 1 tokens


def test_token_windows_too_short():
    with pytest.raises(ConfigError, match="need at least 5 tokens for one window of context_length 4, got 4"):
        TokenWindowDataset(np.arange(4), context_length=4)


def test_dataloader_batches():
    dl = create_dataloader(np.arange(200), context_length=8, batch_size=4, shuffle=True, seed=3)
    batches = list(dl)
    assert len(batches) == 6  # 24 windows, drop_last
    x, y = batches[0]
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(x[:, 1:], y[:, :-1])
    again = list(create_dataloader(np.arange(200), context_length=8, batch_size=4, shuffle=True, seed=3))
    assert len(again) == len(batches) and all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    assert x[:, 0].tolist() != [0, 8, 16, 24]  # shuffled: not the first four windows in order


def test_split_ids():
    train, val = split_ids(np.arange(100), 0.1)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))


def test_tokenize_to_array():
    from gpt.tokenizer import course_tokenizer

    enc = course_tokenizer()
    texts = ["Hello there.", "General Kenobi!"]
    want = enc.encode_ordinary(texts[0]) + [enc.eot_token] + enc.encode_ordinary(texts[1]) + [enc.eot_token]
    ids = tokenize_to_array(texts, enc)
    assert ids.tolist() == want and ids.dtype == np.uint16


def test_tokenize_to_array_uint32_for_big_vocab():
    from gpt.tokenizer import gpt2_tokenizer

    assert tokenize_to_array("Hello, world", gpt2_tokenizer()).tolist() == [15496, 11, 995, 50256]


def test_tokenize_empty_corpus():
    from gpt.tokenizer import course_tokenizer

    with pytest.raises(ValueError, match="empty corpus"):
        tokenize_to_array(["", ""], course_tokenizer())


@pytest.mark.parametrize(
    "call",
    [
        lambda tok: data.load_pretraining_texts(["pg35", "pg99999"]),
        lambda tok: load_pretraining_ids(tok, ["pg35", "pg99999"]),
        lambda tok: data.load_book("pg99999"),
        lambda tok: corpus_token_cache(["pg99999"], tok),
    ],
    ids=["texts", "ids", "book", "cache_path"],
)
def test_unknown_book_before_any_work(call, mirror_dir, cache, monkeypatch):
    from gpt.tokenizer import course_tokenizer

    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    with pytest.raises(DataError, match="unknown dataset 'pg99999'.*known: .*pg1342"):
        call(course_tokenizer())
    assert not cache.exists()  # pg35 was not fetched first


@pytest.mark.parametrize(
    "books, error, phrase",
    [
        ([], ConfigError, "list of books is empty"),
        (["pg35", "pg84", "pg35"], ConfigError, "pg35 listed more than once"),
        (["sms_spam"], DataError, "'sms_spam' is a dataset but not a Project Gutenberg book"),
    ],
)
def test_bad_book_lists(books, error, phrase, mirror_dir, cache, monkeypatch):
    from gpt.tokenizer import course_tokenizer

    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    with pytest.raises(error, match=phrase):
        data.load_pretraining_texts(books)
    with pytest.raises(error, match=phrase):
        load_pretraining_ids(course_tokenizer(), books)
    assert not cache.exists()


@pytest.mark.parametrize("val_fraction", [0, 0.0, 1.0, -0.1, 1.5, float("nan"), "0.1", None, True])
def test_bad_val_fraction(val_fraction, cache):
    from gpt.tokenizer import course_tokenizer

    with pytest.raises(ConfigError, match=f"val_fraction must be .*got {re.escape(repr(val_fraction))}"):
        load_pretraining_ids(course_tokenizer(), ["pg35"], val_fraction=val_fraction)
    with pytest.raises(ConfigError, match="val_fraction must be"):
        split_ids(np.arange(100), val_fraction)
    assert not cache.exists()


def test_tokenize_bad_texts():
    with pytest.raises(ConfigError, match="texts must be strings, got \\['int'"):
        tokenize_to_array([1, 2], Tok())
    with pytest.raises(ConfigError, match="empty corpus"):
        tokenize_to_array([], Tok())


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        (dict(context_length=0), "context_length must be a whole number >= 1, got 0"),
        (dict(context_length=-4), "context_length must be a whole number >= 1, got -4"),
        (dict(context_length=2.5), "context_length must be a whole number >= 1, got 2.5"),
        (dict(context_length="4"), "context_length must be a whole number >= 1, got '4'"),
        (dict(context_length=4, stride=0), "stride must be a whole number >= 1, got 0"),
        (dict(context_length=4, stride=-1), "stride must be a whole number >= 1, got -1"),
        (dict(context_length=100), "need at least 101 tokens .* got 20; use a smaller context_length"),
        (dict(ids=np.arange(20).reshape(4, 5), context_length=4), "1-D sequence of token ids, got shape \\(4, 5\\)"),
        (dict(ids=np.linspace(0, 1, 20), context_length=4), "token ids .* got dtype float64"),
        (dict(ids=np.arange(-5, 15), context_length=4), "token ids \\(whole numbers >= 0\\)"),
        (dict(ids=[], context_length=4), "need at least 5 tokens .* got 0"),
    ],
)
def test_token_windows_bad_arguments(kwargs, phrase):
    kwargs = {"ids": np.arange(20), **kwargs}
    with pytest.raises(ConfigError, match=phrase):
        TokenWindowDataset(**kwargs)
    with pytest.raises(ConfigError, match=phrase):
        create_dataloader(**kwargs)


@pytest.mark.parametrize(
    "batch_size, phrase",
    [
        (0, "batch_size must be a whole number >= 1, got 0"),
        (-2, "batch_size must be a whole number >= 1, got -2"),
        (1.5, "batch_size must be a whole number >= 1, got 1.5"),
        (5, "batch_size 5 is larger than the 4 windows of 4 tokens"),
    ],
)
def test_dataloader_bad_batch_size(batch_size, phrase):
    with pytest.raises(ConfigError, match=phrase):
        create_dataloader(np.arange(17), context_length=4, batch_size=batch_size)
    # without drop_last the one short batch is fine
    assert batch_size != 5 or len(list(create_dataloader(np.arange(17), 4, batch_size=5, drop_last=False))) == 1
