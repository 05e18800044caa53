"""A second text-classification task for the LoRA notebook: who wrote this passage, Twain or Dickens?

Notebook 06 shows "one frozen base model, many small adapters": besides SMS spam it trains a
second adapter on **author attribution**, built from four of the Project Gutenberg books the course
already uses (:data:`AUTHOR_BOOKS`): Mark Twain's *Adventures of Huckleberry Finn* (``pg76``) and
*The Adventures of Tom Sawyer* (``pg74``) against Charles Dickens' *Great Expectations*
(``pg1400``) and *A Tale of Two Cities* (``pg98``). Labels are :data:`AUTHOR_LABELS` =
``("twain", "dickens")`` (class ids 0 and 1; "dickens" is the positive class of precision, recall
and F1 in :func:`gpt.finetune.finetune`).

**What the reference model has seen.** The reference GPT was pretrained on every book except the
last 5 % of each book's *tokens* (:func:`gpt.io.corpus.load_pretraining_ids` with ``val_fraction=0.05``:
each book is encoded on its own, ``ids = encode_ordinary(book) + [<|endoftext|>]``, and the tokens
from ``int(len(ids) * 0.95)`` on are held out). :func:`heldout_start` turns that token boundary into
a character offset of the book text. Then:

* **train** passages come from the paragraphs that end before the boundary (the model has read
  this text during pretraining, but never the labels: that is ordinary fine-tuning data);
* **val** and **test** passages come only from paragraphs that *start* after the boundary (the
  paragraph cut by the boundary is used by no split). Each book's held-out passages are cut in
  two halves: val passages come from the first half, test passages from the second (minus one
  that would begin in the paragraph where val ends), so val and test are different stretches of text. As a further guard, a val/test passage that shares any
  run of :data:`OVERLAP_WORDS` consecutive words with text the model was trained on (the
  pretraining part of the four books, and the whole text of the other pretraining books) is dropped.

**Passages** are runs of consecutive whole sentences of :data:`MIN_WORDS`-:data:`MAX_WORDS` words
(about the length of a long SMS), never across a chapter heading; a sentence longer than
``max_words`` is not used. The text is **normalised** so that the editions' typography cannot
give the author away (the Dickens files use curly quotes, *Tom Sawyer* straight ones, etc.): curly
quotes become straight ``'`` / ``"``, the em dash ``—`` becomes ``--`` and the en dash ``-``, the
``_italic_`` underscores are removed, and all whitespace (line breaks, no-break spaces) becomes
single spaces.

**Sizes** with the defaults (``seed`` only changes *which* Dickens val/test passages and which
training passages are drawn, not the counts): train 300 + 300, val 107 + 107, test 101 + 101
passages (twain + dickens), 20-60 words each (median about 30; an SMS in the spam task has about 15).
Val and test use every usable Twain passage of the held-out tails (Twain is the smaller class
there: 107 and 101 of them; Dickens has about 220 per split and is subsampled); the pretraining
parts hold about 4,700 Twain and 8,300 Dickens passages to draw the training passages from. The
splits are identical on every machine: the text processing is plain Python and the random draws
use numpy's PCG64 generator (``tests/test_tasks.py`` pins the sha256 of the seed-0 splits).

Example::

    splits = author_splits(seed=0)
    config = default_config("lora", labels=AUTHOR_LABELS, eval_splits=("test",))
    model = build_model(config)                     # the reference model with LoRA r=8 on every block Linear
    finetune(model, splits, config)

Known limitation: the course tokenizer (BPE) was trained on the full text of all books, held-out
tails included; it fixes only which character sequences are single tokens, not what the model learned.
"""

from __future__ import annotations

import functools
import re

import numpy as np
import pandas as pd

from ..data import load_book, tokenize_to_array
from ..io.downloads import PRETRAIN_BOOKS, REGISTRY
from ..io.tokenizer_files import tokenizer_fingerprint
from ..tokenizer import course_tokenizer


__all__ = [
    "AUTHOR_LABELS",
    "AUTHOR_BOOKS",
    "HELDOUT_FRACTION",
    "MIN_WORDS",
    "MAX_WORDS",
    "OVERLAP_WORDS",
    "author_splits",
    "heldout_start",
    "normalize_text",
]

AUTHOR_LABELS = ("twain", "dickens")
AUTHOR_BOOKS = {"twain": ("pg76", "pg74"), "dickens": ("pg1400", "pg98")}
# The reference model's held-out share of every book (gpt/assets/reference/model_card.json: val_fraction).
HELDOUT_FRACTION = 0.05
MIN_WORDS, MAX_WORDS = 20, 60
TRAIN_PER_CLASS = 300
# A val/test passage sharing this many consecutive words with training text is dropped.
OVERLAP_WORDS = 8
SPLITS = ("train", "val", "test")

# ---------------------------------------------------------------------------------------------
# Text


_TYPOGRAPHY = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2014": "--", "\u2013": "-", "_": None})


_LINE_END_HYPHEN = re.compile(r"-[ \t]*\n\s*")


def normalize_text(text: str) -> str:
    """The passage form of ``text``: straight quotes, ``--`` for dashes, no ``_`` italics, single spaces.

    A hyphen at the end of a line joins the two lines ("lightning-\\nrod" -> "lightning-rod").
    """
    text = _LINE_END_HYPHEN.sub("-", text.translate(_TYPOGRAPHY))
    return " ".join(text.split())  # str.split() splits on every Unicode whitespace (no-break and thin spaces too)


_ABBREVIATIONS = {"mr", "mrs", "dr", "st", "messrs", "mme", "mlle", "m", "capt", "col", "gen", "rev", "jr", "sr", "esq", "no", "vol"}
# A sentence ends at . ! or ? (plus closing quotes/brackets) followed by a space and a capital or an opening quote.
_SENTENCE_END = re.compile(r"""[.!?]+['")\]]*(?= +["'(\[]?[A-Z])""")


def _sentences(paragraph: str) -> list[str]:
    """Split one normalised paragraph into sentences (abbreviations like "Mr." do not end one)."""
    out, start = [], 0
    for m in _SENTENCE_END.finditer(paragraph):
        before = paragraph[start : m.start()].rsplit(None, 1)
        last_word = before[-1].lstrip("\"'(").lower() if before else ""
        if m.group().startswith(".") and (last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha())):
            continue  # "Mr. Jaggers", "J. Cruncher"
        out.append(paragraph[start : m.end()].strip())
        start = m.end()
    rest = paragraph[start:].strip()
    if rest:
        out.append(rest)
    return out


_HEADING = re.compile(r"^(chapter|book|volume|part)\b|^[ivxlc]+\.(\s|$)|^the end\b|^conclusion\b", re.IGNORECASE)


def _is_heading(paragraph: str) -> bool:
    """Chapter and book titles, illustrations, and leftover Gutenberg lines: not prose."""
    p = paragraph.strip()
    if not any(c.islower() for c in p) or p.startswith("[") or "gutenberg" in p.lower() or "ebook" in p.lower():
        return True
    if _HEADING.match(p):
        return True
    return len(p.split()) < 8 and p[-1] not in ".!?\"'"  # a short line without final punctuation: a title


_PARAGRAPH = re.compile(r"\S(?:[^\n]|\n(?![ \t]*\n))*")  # text up to the next blank line


def _passages(text: str, lo: int, hi: int, min_words: int, max_words: int) -> list[tuple[int, int, str]]:
    """Passages ``(start, end, text)`` from the paragraphs lying wholly inside ``text[lo:hi]``.

    ``start``/``end``: character span in ``text`` from the first to the last paragraph used.
    Consecutive sentences are packed until the passage has at least ``min_words`` words; words
    at its front are dropped (whole sentences) if it went over ``max_words``. A heading, or a
    sentence longer than ``max_words``, ends the run of text being packed.
    """
    out: list[tuple[int, int, str]] = []
    cur: list[tuple[int, int, str, int]] = []  # (paragraph start, paragraph end, sentence, words)
    for m in _PARAGRAPH.finditer(text):  # over the whole text, so a paragraph cut by lo or hi is seen whole...
        raw = m.group().rstrip()
        start, end = m.start(), m.start() + len(raw)
        if start < lo:
            continue
        if end > hi:  # ...and left out
            break
        para = normalize_text(raw)
        if _is_heading(para):
            cur = []
            continue
        for s in _sentences(para):
            n = len(s.split())
            if n > max_words:
                cur = []
                continue
            cur.append((start, end, s, n))
            while sum(c[3] for c in cur) > max_words:
                cur.pop(0)
            if sum(c[3] for c in cur) >= min_words:
                out.append((cur[0][0], cur[-1][1], " ".join(c[2] for c in cur)))
                cur = []
    return out


_WORD = re.compile(r"[a-z0-9]+")


def _ngrams(text: str, n: int):
    w = _WORD.findall(text.lower().translate(_TYPOGRAPHY))
    return (" ".join(w[i : i + n]) for i in range(len(w) - n + 1))


# ---------------------------------------------------------------------------------------------
# The held-out boundary


def heldout_start(book: str, tokenizer=None, val_fraction: float = HELDOUT_FRACTION) -> int:
    """Character offset in ``load_book(book)`` where the book's held-out tail begins.

    Exactly the split of :func:`gpt.io.corpus.load_pretraining_ids`: the book's tokens are
    ``tokenize_to_array(text, tokenizer)`` (its ids plus ``<|endoftext|>``), the first
    ``int(n_tokens * (1 - val_fraction))`` are pretraining data, the rest is held out. The text of
    the tokens before the cut is a byte prefix of the book; the returned offset is the first
    character that lies wholly after it (``text[:offset]`` holds every character the model trained on).
    """
    if book not in REGISTRY or not REGISTRY[book].relpath.startswith("pretrain/"):
        raise ValueError(f"{book!r} is not a pretraining book; choose one of {PRETRAIN_BOOKS}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction!r}")
    if tokenizer is None:
        tokenizer = course_tokenizer()
    return _heldout_start(book, tokenizer, float(val_fraction))


def _heldout_start(book: str, tokenizer, val_fraction: float) -> int:
    text = load_book(book)
    ids = tokenize_to_array(text, tokenizer)
    cut = int(len(ids) * (1 - val_fraction))
    seen = tokenizer.decode_bytes(ids[:cut].tolist())
    raw = text.encode("utf-8")
    if not raw.startswith(seen):
        raise RuntimeError(f"{book}: the tokens before the cut do not decode to a prefix of the book")
    chars = seen.decode("utf-8", errors="ignore")  # a character cut in two by the boundary is dropped...
    return len(chars) + (len(chars.encode("utf-8")) < len(seen))  # ...and counted as seen


# ---------------------------------------------------------------------------------------------
# The splits


@functools.lru_cache(maxsize=4)
def _candidates(min_words: int, max_words: int, fingerprint: str, val_fraction: float) -> dict:
    """Every usable passage per (split, label), in book order, before balancing: ``{(split, label): [rows]}``."""

    tokenizer = course_tokenizer()
    assert tokenizer_fingerprint(tokenizer) == fingerprint
    cands = {(s, label): [] for s in SPLITS for label in AUTHOR_LABELS}
    held: list[dict] = []
    trained_text: list[str] = []
    for label in AUTHOR_LABELS:
        for book in AUTHOR_BOOKS[label]:
            text = load_book(book)
            boundary = _heldout_start(book, tokenizer, val_fraction)
            trained_text.append(text[:boundary])
            rows = lambda ps: [dict(label=label, text=t, book=book, start=a, end=b) for a, b, t in ps]  # noqa: E731
            cands[("train", label)] += rows(_passages(text, 0, boundary, min_words, max_words))
            tail = rows(_passages(text, boundary, len(text), min_words, max_words))
            half = len(tail) // 2  # val: the first half of the tail's passages, test: the second...
            for r in tail[:half]:
                r["split"] = "val"
            val_end = tail[half - 1]["end"] if half else boundary
            for r in tail[half:]:  # ...minus any that starts in the paragraph where val ends
                r["split"] = "test" if r["start"] >= val_end else None
            held += [r for r in tail if r["split"]]
    for book in PRETRAIN_BOOKS:  # the other books were trained on too (all but their tails: check all)
        if not any(book in books for books in AUTHOR_BOOKS.values()):
            trained_text.append(load_book(book))

    # Drop held-out passages that share a run of OVERLAP_WORDS words with training text.
    grams: dict[str, list[int]] = {}
    for i, r in enumerate(held):
        for g in _ngrams(r["text"], OVERLAP_WORDS):
            grams.setdefault(g, []).append(i)
    leaked = {i for t in trained_text for g in _ngrams(t, OVERLAP_WORDS) for i in grams.get(g, ())}
    # ...and any passage text that occurs twice (a repeated passage must not sit in two splits).
    seen: set[str] = set()
    for key in [("train", label) for label in AUTHOR_LABELS]:
        keep = []
        for r in cands[key]:
            if r["text"] not in seen:
                seen.add(r["text"])
                keep.append(r)
        cands[key] = keep
    for i, r in enumerate(held):
        if i in leaked or r["text"] in seen:
            continue
        seen.add(r["text"])
        cands[(r.pop("split"), r["label"])].append(r)
    return cands


def _check_count(value, name: str, minimum: int = 1, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{' or None' if allow_none else ''}, got {value!r}")


def author_splits(
    seed: int = 0,
    train_per_class: int = TRAIN_PER_CLASS,
    eval_per_class: int | None = None,
    min_words: int = MIN_WORDS,
    max_words: int = MAX_WORDS,
) -> dict:
    """Twain-vs-Dickens passages: ``{"train", "val", "test"}`` DataFrames (see the module docstring).

    Columns: ``label`` (``"twain"`` / ``"dickens"``), ``text`` (the normalised passage), ``book``
    (registry name, e.g. ``"pg76"``), ``start`` and ``end`` (character span in ``load_book(book)``
    of the paragraphs the passage comes from). Every split has as many passages of each class;
    rows are shuffled.

    Args:
        seed: a non-negative integer; chooses the training passages, the Dickens val/test passages
            (subsampled to the Twain count) and the row order. Same seed, same splits, on any machine.
        train_per_class: training passages per author (default 300; at most what the pretraining
            parts hold: about 4,700 Twain passages with the default lengths).
        eval_per_class: val and test passages per author; ``None`` (default): as many as the Twain
            held-out tails allow (107 val, 101 test with the default lengths).
        min_words, max_words: passage length in words (defaults 20 and 60).

    Raises ValueError for a negative or non-integer seed or count, ``min_words > max_words``, or a
    request for more passages than there are. Needs the four books (and the other pretraining
    books, for the overlap check) from the cache or ``GPT_DATA_MIRROR``; no network when they are there.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    _check_count(train_per_class, "train_per_class")
    _check_count(eval_per_class, "eval_per_class", allow_none=True)
    _check_count(min_words, "min_words")
    _check_count(max_words, "max_words")
    if min_words > max_words:
        raise ValueError(f"min_words ({min_words}) must not exceed max_words ({max_words})")


    cands = _candidates(int(min_words), int(max_words), tokenizer_fingerprint(course_tokenizer()), HELDOUT_FRACTION)
    rng = np.random.Generator(np.random.PCG64(int(seed)))

    def order(n):  # a random permutation from uniform doubles (stable across numpy versions)
        return np.argsort(rng.random(n), kind="stable")

    out = {}
    for split in SPLITS:
        available = {label: len(cands[(split, label)]) for label in AUTHOR_LABELS}
        want = train_per_class if split == "train" else eval_per_class
        if want is None:
            want = min(available.values())
        if want > min(available.values()):
            raise ValueError(
                f"{split}: asked for {want} passages per author, but only {available} are available"
                f" with min_words={min_words}, max_words={max_words}"
            )
        rows = []
        for label in AUTHOR_LABELS:
            pool = cands[(split, label)]
            rows += [pool[i] for i in sorted(order(len(pool))[:want])]
        rows = [rows[i] for i in order(len(rows))]
        out[split] = pd.DataFrame(rows, columns=["label", "text", "book", "start", "end"])
    return out
