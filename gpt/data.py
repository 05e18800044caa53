"""Data for pretraining: the books as text, token ids, and next-token windows.

* :func:`load_book` / :func:`load_pretraining_texts`: the Project Gutenberg books the course pretrains
  on (:data:`gpt.io.downloads.PRETRAIN_BOOKS`), each header and footer removed by :func:`strip_gutenberg`.
* :func:`tokenize_to_array`: texts to one array of token ids, ``<|endoftext|>`` after each.
* :func:`load_pretraining_ids`: the whole corpus as token ids, split per book into training and validation.
* :class:`TokenWindowDataset` / :func:`create_dataloader`: (inputs, next-token targets) windows over a token stream.

The files come verified from :mod:`gpt.io.downloads` (the registry, the mirror, sha256 checks), and a
tokenized corpus is cached by :mod:`gpt.io.token_cache`. Every problem a user can cause raises
:class:`~gpt.errors.DataError` or :class:`~gpt.errors.ConfigError`, before any work where possible.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .checks import check_number, check_whole_number
from .errors import ConfigError, DataError
from .io.downloads import book_names, fetch, read_text
from .io.sms_files import load_sms_spam  # noqa: F401  (part of this module's API: notebooks 01 and 05 load the SMS collection from here)
from .io.token_cache import corpus_token_cache, load_token_cache, save_token_cache
from .runtime.progress import progress_bar


def _check_fraction(val_fraction) -> float:
    check_number("val_fraction", val_fraction, low=0.0, high=1.0, low_open=True, high_open=True)
    return float(val_fraction)


def _positive_int(what: str, value) -> int:
    check_whole_number(what, value, minimum=1)
    return int(value)


# ---------------------------------------------------------------------------------------------
# The books


def strip_gutenberg(text: str, name: str = "text") -> str:
    """Keep only the book: the lines between ``*** START OF ...`` and ``*** END OF ...``
    (to the end of the file where the END marker is missing). A marker may be indented
    (pg35's END marker is)."""
    lines = text.split("\n")
    start = next((i for i, l in enumerate(lines) if l.lstrip().startswith("*** START OF")), None)
    if start is None:
        raise DataError(f"{name}: no '*** START OF' Project Gutenberg marker found")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("*** END OF")), len(lines))
    book = "\n".join(lines[start + 1 : end]).strip()
    if not book:
        raise DataError(f"{name}: no text between the '*** START OF' and '*** END OF' markers")
    return book + "\n"


def load_book(name: str) -> str:
    """One Gutenberg book (registry name such as ``"pg1342"``), header and footer removed."""
    (name,) = book_names([name])
    return strip_gutenberg(read_text(fetch(name, progress=False)), name)


def load_pretraining_texts(books: list[str] | None = None) -> dict[str, str]:
    """The pretraining corpus: ``{registry name: book text}`` for the 22 Gutenberg books (or ``books``)."""
    return {b: load_book(b) for b in book_names(books)}


def load_the_verdict() -> str:
    return read_text(fetch("the_verdict", progress=False))


# ---------------------------------------------------------------------------------------------
# Token datasets


def tokenize_to_array(texts, tokenizer, cache: str | os.PathLike | None = None, progress: bool = False) -> np.ndarray:
    """Encode texts into one array of token ids, ``<|endoftext|>`` after each text.

    With ``cache``, the array is saved as ``.npy`` the first time and loaded afterwards (a damaged
    file is rebuilt). The cache is only valid for the same texts and tokenizer; name it accordingly
    (see :func:`corpus_token_cache`).
    """
    if cache is not None and Path(cache).exists():
        ids = load_token_cache(Path(cache), tokenizer.n_vocab)
        if ids is not None:
            return ids
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise ConfigError(f"texts must be strings, got {sorted({type(t).__name__ for t in texts})}")
    if not texts or not any(texts):
        raise ConfigError("cannot tokenize an empty corpus: every text is empty")
    eot = tokenizer.eot_token
    dtype = np.uint16 if tokenizer.n_vocab <= 65536 else np.uint32
    if progress:
        texts = progress_bar(texts, desc="tokenizing")
    parts = [np.asarray(tokenizer.encode_ordinary(t) + [eot], dtype=dtype) for t in texts]
    ids = np.concatenate(parts)
    if cache is not None:
        save_token_cache(Path(cache), ids)
    return ids


def split_ids(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split a token stream into its first (1 - val_fraction) and last val_fraction."""
    val_fraction = _check_fraction(val_fraction)
    cut = int(len(ids) * (1 - val_fraction))
    if cut == 0 or cut == len(ids):
        raise ConfigError(
            f"val_fraction {val_fraction!r} of {len(ids)} tokens leaves no {'training' if cut == 0 else 'validation'} "
            "tokens; choose a value that leaves some of each"
        )
    return ids[:cut], ids[cut:]


class TokenWindowDataset(torch.utils.data.Dataset):
    """Next-token windows over a token stream: item i is (ids[s : s+ctx], ids[s+1 : s+ctx+1]) with s = i·stride.

    ``stride == context_length`` (the default) gives non-overlapping windows; a smaller stride overlaps them.
    """

    def __init__(self, ids, context_length: int, stride: int | None = None):
        context_length = _positive_int("context_length", context_length)
        stride = context_length if stride is None else _positive_int("stride", stride)
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ConfigError(f"ids must be a 1-D sequence of token ids, got shape {arr.shape}")
        if len(arr) < context_length + 1:
            raise ConfigError(
                f"need at least {context_length + 1} tokens for one window of context_length {context_length}, "
                f"got {len(arr)}; use a smaller context_length or more text"
            )
        if arr.dtype.kind not in "iu" or arr.min() < 0:
            raise ConfigError(f"ids must be token ids (whole numbers >= 0), got dtype {arr.dtype}")
        self.ids = torch.from_numpy(arr.astype(np.int64))
        self.context_length, self.stride = context_length, stride

    def __len__(self):
        return (len(self.ids) - self.context_length - 1) // self.stride + 1

    def __getitem__(self, i):
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        s = (i % len(self)) * self.stride
        chunk = self.ids[s : s + self.context_length + 1]
        return chunk[:-1], chunk[1:]


def create_dataloader(ids, context_length: int, stride: int | None = None, batch_size: int = 8, shuffle: bool = True, drop_last: bool = True, seed: int = 0):
    """A DataLoader of (inputs, targets) batches over :class:`TokenWindowDataset`."""
    batch_size = _positive_int("batch_size", batch_size)
    ds = TokenWindowDataset(ids, context_length, stride)
    if drop_last and len(ds) < batch_size:
        raise ConfigError(
            f"batch_size {batch_size} is larger than the {len(ds)} windows of {ds.context_length} tokens, so with "
            "drop_last there is not a single batch; use a smaller batch_size or context_length, or more text"
        )
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=g)


def load_pretraining_ids(tokenizer, books: list[str] | None = None, val_fraction: float = 0.05, progress: bool = False):
    """Token ids of the pretraining corpus, split per book: the last ``val_fraction`` of every book
    is held out for validation, the rest is for training. Returns ``(train_ids, val_ids)``.

    The tokenized corpus is cached under ``data/cache`` (keyed by the books' sha256 and the tokenizer);
    a damaged cache is rebuilt.
    """
    val_fraction = _check_fraction(val_fraction)
    books = book_names(books)
    # The tag names the text preparation: change it whenever strip_gutenberg/read_text change what a book yields.
    cache = corpus_token_cache(books, tokenizer, tag="per-book-v2")
    offsets_path = cache.with_suffix(".offsets.npy")
    ids = offsets = None
    if cache.exists() and offsets_path.exists():
        ids, offsets = load_token_cache(cache, tokenizer.n_vocab), load_token_cache(offsets_path)
        if ids is not None and offsets is not None and not (
            len(offsets) == len(books) + 1 and offsets[0] == 0 and offsets[-1] == len(ids) and np.all(np.diff(offsets) > 0)
        ):
            warnings.warn(f"token cache {offsets_path} does not match {cache}; rebuilding both", RuntimeWarning, stacklevel=2)
            ids = None
    if ids is None or offsets is None:
        texts = load_pretraining_texts(books)
        parts = [tokenize_to_array(t, tokenizer) for t in (texts.values() if not progress else _tqdm(texts.values()))]
        ids = np.concatenate(parts)
        offsets = np.cumsum([0] + [len(p) for p in parts])
        save_token_cache(offsets_path, offsets)
        save_token_cache(cache, ids)
    train, val = [], []
    for book, a, b in zip(books, offsets[:-1], offsets[1:]):
        cut = a + int((b - a) * (1 - val_fraction))
        if cut == b or cut == a:
            raise ConfigError(
                f"val_fraction {val_fraction!r} leaves {book} ({b - a} tokens) with no "
                f"{'validation' if cut == b else 'training'} tokens; choose a value that leaves some of each"
            )
        train.append(ids[a:cut])
        val.append(ids[cut:b])
    return np.concatenate(train), np.concatenate(val)


def _tqdm(it):
    return progress_bar(list(it), desc="tokenizing")
