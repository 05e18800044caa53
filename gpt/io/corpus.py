"""The pretraining corpus as token ids: every book tokenized once, cached, and split per book.

:func:`load_pretraining_ids` is what ``python -m gpt pretrain`` and notebook 04 train on: the books of
:data:`gpt.io.downloads.PRETRAIN_BOOKS` (or those given) read with :func:`gpt.data.load_pretraining_texts`,
tokenized with :func:`gpt.data.tokenize_to_array`, and kept as one ``.npy`` cache of ids plus one of
the books' offsets in it (:mod:`gpt.io.token_cache`): a damaged cache, or offsets that do not match the
ids, are rebuilt with a warning. Each book's last ``val_fraction`` of tokens is held out for validation.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..checks import check_number
from ..data import load_pretraining_texts, tokenize_to_array
from ..errors import ConfigError
from ..runtime.progress import progress_bar
from .downloads import book_names
from .token_cache import corpus_token_cache, load_token_cache, save_token_cache


def load_pretraining_ids(tokenizer, books: list[str] | None = None, val_fraction: float = 0.05, progress: bool = False):
    """Token ids of the pretraining corpus, split per book: the last ``val_fraction`` of every book
    is held out for validation, the rest is for training. Returns ``(train_ids, val_ids)``.

    The tokenized corpus is cached under ``data/cache`` (keyed by the books' sha256 and the tokenizer);
    a damaged cache is rebuilt.
    """
    check_number("val_fraction", val_fraction, low=0.0, high=1.0, low_open=True, high_open=True)
    val_fraction = float(val_fraction)
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
