"""The Twain-vs-Dickens task (gpt.experiments.tasks): sizes, balance, determinism, no leaks into val/test."""

import hashlib
import re

import numpy as np
import pytest
import torch

from gpt.experiments import tasks as T
from gpt.experiments.tasks import AUTHOR_BOOKS, AUTHOR_LABELS, author_splits, heldout_start, normalize_text

# sha256 of each seed-0 split written as CSV (index=False, "\n" line ends): the splits are the same everywhere.
SEED0_SHA256 = {
    "train": "5404f741ff1bb74b2f7a03a29deb12e89d8f2562e0836426eda463f57db1ad59",
    "val": "9a5c84374c07c6beabb0d0aef7f4c95429c19e5734b5c636728c98c69b7a321f",
    "test": "7185ab5c0f273be4bbf92335a7ba1072cf98d4240bcfa9f17895291167fb30dc",
}
BOOKS = [b for books in AUTHOR_BOOKS.values() for b in books]


def csv_sha256(df) -> str:
    return hashlib.sha256(df.to_csv(index=False, lineterminator="\n").encode("utf-8")).hexdigest()


@pytest.fixture()
def data_env(mirror_dir, tmp_path_factory, monkeypatch):
    """Books from the mirror, downloads cached in a temporary folder (nothing written to data/)."""
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    monkeypatch.setenv("GPT_DATA_DIR", str(tmp_path_factory.mktemp("data")))


@pytest.fixture()
def splits(data_env):
    return author_splits(seed=0)


# --- without data --------------------------------------------------------------------------------


def test_labels_and_books():
    assert AUTHOR_LABELS == ("twain", "dickens")
    assert AUTHOR_BOOKS == {"twain": ("pg76", "pg74"), "dickens": ("pg1400", "pg98")}
    from gpt.io.downloads import PRETRAIN_BOOKS, REGISTRY

    assert set(BOOKS) <= set(PRETRAIN_BOOKS)
    titles = {REGISTRY[b].meta["title"] for b in BOOKS}
    assert titles == {"Adventures of Huckleberry Finn", "The Adventures of Tom Sawyer", "Great Expectations", "A Tale of Two Cities"}


def test_heldout_fraction_is_the_reference_models():
    from gpt.teaching.reference import reference_card

    try:
        card = reference_card()
    except FileNotFoundError:
        pytest.skip("no reference model card in this installation")
    assert card["val_fraction"] == T.HELDOUT_FRACTION
    from gpt.io.downloads import REGISTRY

    assert all(REGISTRY[b].relpath in card["corpus"] for b in BOOKS)


def test_normalize_text():
    raw = "“Well,” said he—_quite_ sure—‘it’s\n  a lightning-\nrod, isn’t\u00a0it?” "
    assert normalize_text(raw) == "\"Well,\" said he--quite sure--'it's a lightning-rod, isn't it?\""
    assert normalize_text("to--\ngoodness") == "to--goodness"
    assert normalize_text(" a \t b\n\nc ") == "a b c"


def test_sentences_keep_abbreviations():
    assert T._sentences('"Yes," said Mr. Jaggers. Then J. Cruncher left! "Why?" he asked.') == [
        '"Yes," said Mr. Jaggers.',
        "Then J. Cruncher left!",
        '"Why?" he asked.',
    ]


def test_passages_lengths_headings_and_spans():
    para = "One two three four five six. Seven eight nine ten eleven twelve. "
    text = f"CHAPTER I.\n\n{para * 2}\n\nChapter II\n\n{para}\nMore words here and there now.\n\n{'word ' * 70}.\n"
    got = T._passages(text, 0, len(text), min_words=10, max_words=15)
    assert [len(t.split()) for _, _, t in got] == [12, 12, 12]
    assert all("CHAPTER" not in t and "Chapter" not in t for _, _, t in got)
    for a, b, t in got:
        assert text[a:b].split()[0] == t.split()[0]
    # a paragraph cut by the region's ends is not used
    cut = text.index("Seven")
    assert all(a >= text.index("Chapter II") for a, _, _ in T._passages(text, cut, len(text), 10, 15))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(seed=-1), dict(seed=1.5), dict(seed="0"), dict(seed=True),
        dict(train_per_class=0), dict(train_per_class=2.0), dict(eval_per_class=0),
        dict(min_words=0), dict(min_words=30, max_words=20),
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        author_splits(**kwargs)


def test_heldout_start_bad_arguments():
    with pytest.raises(ValueError, match="not a pretraining book"):
        heldout_start("sms_spam")
    with pytest.raises(ValueError, match="not a pretraining book"):
        heldout_start("pg999999")
    with pytest.raises(ValueError, match="val_fraction"):
        heldout_start("pg76", val_fraction=0.0)


# --- with the books --------------------------------------------------------------------------------


def test_sizes_balance_and_columns(splits):
    assert list(splits) == ["train", "val", "test"]
    sizes = {name: df["label"].value_counts().to_dict() for name, df in splits.items()}
    assert sizes == {
        "train": {"twain": 300, "dickens": 300},
        "val": {"twain": 107, "dickens": 107},
        "test": {"twain": 101, "dickens": 101},
    }
    for name, df in splits.items():
        assert list(df.columns) == ["label", "text", "book", "start", "end"]
        assert set(df["label"]) == set(AUTHOR_LABELS)
        assert all(b in AUTHOR_BOOKS[label] for label, b in zip(df["label"], df["book"]))
        n_words = df["text"].str.split().str.len()
        assert n_words.between(T.MIN_WORDS, T.MAX_WORDS).all(), name
        assert all(t == " ".join(t.split()) and "_" not in t and not re.search("[“”‘’—]", t) for t in df["text"])
        assert df["label"].iloc[:20].nunique() == 2  # rows are shuffled, not sorted by class


def test_deterministic_and_pinned(splits):
    assert {name: csv_sha256(df) for name, df in splits.items()} == SEED0_SHA256
    T._candidates.cache_clear()  # rebuilt from the books: the same splits
    again = author_splits(seed=0)
    for name in splits:
        assert splits[name].equals(again[name])
    other = author_splits(seed=1)
    assert not set(other["train"]["text"]) == set(splits["train"]["text"])
    assert set(other["test"]["text"][other["test"]["label"] == "twain"]) == set(
        splits["test"]["text"][splits["test"]["label"] == "twain"]
    )  # every Twain test passage is used, whatever the seed
    assert {n: len(d) for n, d in other.items()} == {n: len(d) for n, d in splits.items()}


def test_counts_and_errors_for_too_many(data_env):
    small = author_splits(seed=3, train_per_class=10, eval_per_class=5)
    assert {n: len(d) for n, d in small.items()} == {"train": 20, "val": 10, "test": 10}
    with pytest.raises(ValueError, match="only"):
        author_splits(train_per_class=100_000)
    with pytest.raises(ValueError, match="only"):
        author_splits(eval_per_class=10_000)


def test_no_passage_in_two_splits(splits):
    texts = {name: set(df["text"]) for name, df in splits.items()}
    for name, df in splits.items():
        assert df["text"].is_unique, name
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        assert not texts[a] & texts[b]
    # the passages' source spans never overlap between splits
    for book in BOOKS:
        spans = sorted(
            (int(s), int(e), name) for name, df in splits.items() for s, e in zip(df["start"][df["book"] == book], df["end"][df["book"] == book])
        )
        for (s1, e1, n1), (s2, e2, n2) in zip(spans, spans[1:]):
            assert n1 == n2 or e1 <= s2, f"{book}: {n1} passage [{s1}, {e1}) overlaps {n2} passage [{s2}, {e2})"
    # val / test share no run of OVERLAP_WORDS words with the training passages
    train_grams = {g for t in splits["train"]["text"] for g in T._ngrams(t, T.OVERLAP_WORDS)}
    for name in ("val", "test"):
        assert not any(g in train_grams for t in splits[name]["text"] for g in T._ngrams(t, T.OVERLAP_WORDS))


def test_val_and_test_lie_in_the_heldout_tails(splits):
    """Checked against gpt.io.corpus.load_pretraining_ids itself: every val/test passage is a run of words of
    the decoded held-out tokens of its book; every train passage lies before the held-out start."""
    from gpt.data import load_book
    from gpt.io.corpus import load_pretraining_ids
    from gpt.tokenizer import course_tokenizer

    enc = course_tokenizer()
    words = lambda s: " " + " ".join(re.findall(r"[a-z0-9]+", normalize_text(s).lower())) + " "  # noqa: E731
    for book in BOOKS:
        train_ids, val_ids = load_pretraining_ids(enc, [book], val_fraction=T.HELDOUT_FRACTION)
        text = load_book(book)
        assert enc.decode_bytes(train_ids.tolist()) + enc.decode_bytes(val_ids[:-1].tolist()) == text.encode("utf-8")
        tail = words(enc.decode_bytes(val_ids[:-1].tolist()).decode("utf-8", errors="replace"))
        start = heldout_start(book)
        assert text[:start].encode("utf-8") == enc.decode_bytes(train_ids.tolist())  # a clean cut in these books
        for name, df in splits.items():
            rows = df[df["book"] == book]
            assert len(rows) > 0
            if name == "train":
                assert (rows["end"] <= start).all()
            else:
                assert (rows["start"] >= start).all()
                for t in rows["text"]:
                    assert words(t) in tail, f"{name} passage not in the held-out tail of {book}: {t!r}"


def test_finetune_accepts_the_author_task(splits):
    """gpt.finetune.finetune trains on these splits with labels=AUTHOR_LABELS (a tiny model, a few passages)."""
    from gpt.classifier import GPTClassifier, set_trainable
    from gpt.errors import ConfigError
    from gpt.finetune import default_config, finetune
    from gpt.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPTClassifier(GPT(GPTConfig(vocab_size=4096, context_length=128, n_layer=1, n_head=2, n_embd=32)))
    set_trainable(model, "full")
    small = {name: df.head(16 if name == "train" else 8) for name, df in splits.items()}
    config = default_config("full", labels=AUTHOR_LABELS, eval_splits=("test",), epochs=1, batch_size=8, lr=1e-3, precision="fp32")
    result = finetune(model, small, config, progress=False)
    test = result.metrics["test"]
    assert result.config.labels == tuple(AUTHOR_LABELS) and test["n"] == 8
    assert test["predicted"] == [AUTHOR_LABELS[1] if p > 0.5 else AUTHOR_LABELS[0] for p in test["spam_probability"]]
    assert np.isfinite(result.history["train_loss"][0])
    with pytest.raises(ConfigError, match="labels"):  # ham/spam labels: a clear error
        finetune(model, small, default_config("full", eval_splits=("test",), epochs=1), progress=False)
