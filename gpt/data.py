"""Data for pretraining: the books as text, token ids, and next-token windows.

* :func:`load_book` / :func:`load_pretraining_texts`: the Project Gutenberg books the course pretrains
  on (:data:`gpt.io.downloads.PRETRAIN_BOOKS`), each header and footer removed by :func:`strip_gutenberg`.
* :func:`tokenize_to_array`: texts to one array of token ids, ``<|endoftext|>`` after each.
* :class:`TokenWindowDataset` / :func:`create_dataloader`: (inputs, next-token targets) windows over a token stream.

The files come verified from :mod:`gpt.io.downloads` (the registry, the mirror, sha256 checks), a
tokenized corpus is cached by :mod:`gpt.io.token_cache`, and the whole corpus as token ids, tokenized
once and split per book into training and validation, is :func:`gpt.io.corpus.load_pretraining_ids`.
Every problem a user can cause raises :class:`~gpt.errors.DataError` or :class:`~gpt.errors.ConfigError`,
before any work where possible.
"""

from __future__ import annotations

import numpy as np
import torch

from .checks import check_number, check_whole_number
from .errors import ConfigError, DataError
from .io.downloads import book_names, fetch, read_text
from .io.sms_files import load_sms_spam  # noqa: F401  (part of this module's API: notebooks 01 and 05 load the SMS collection from here)
from .runtime.progress import progress_bar


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


def tokenize_to_array(texts, tokenizer, progress: bool = False) -> np.ndarray:
    """Encode texts into one array of token ids, ``<|endoftext|>`` after each text.

    Saved as ``.npy`` the first time and loaded afterwards: :func:`gpt.io.token_cache.tokenize_with_cache`.
    """
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
    return np.concatenate(parts)


def split_ids(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split a token stream into its first (1 - val_fraction) and last val_fraction."""
    check_number("val_fraction", val_fraction, low=0.0, high=1.0, low_open=True, high_open=True)
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
