"""Token caches: a tokenized corpus saved as ``.npy`` under ``data/cache``, so a run tokenizes it only once.

A cache is named by what it was made from (:func:`corpus_token_cache`: the files' sha256, the tokenizer's
fingerprint and a tag), written in one step (:func:`gpt.io.files.atomic_write_bytes`), and checked when
read: a damaged file (truncated, not ``.npy``, not token ids of this tokenizer) is rebuilt with a warning,
and a cache that cannot be written is a warning too (only the next run is slower).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..tokenizer import tokenizer_fingerprint
from .downloads import cache_write_error, data_dir, resource
from .files import OutputError, atomic_write_bytes, sha256_bytes


def save_npy(path: Path, arr: np.ndarray) -> None:
    """Save ``arr`` to ``path`` in one step (:func:`gpt.io.files.atomic_write_bytes`); :class:`DataError` if it
    cannot be written. The temporary file is removed on any failure, Ctrl-C included."""
    buf = io.BytesIO()
    np.save(buf, arr)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OutputError as e:
        cause = e.__cause__ if isinstance(e.__cause__, OSError) else OSError(str(e))
        raise cache_write_error(cause, Path(path)) from e


def save_token_cache(path: Path, arr: np.ndarray) -> None:
    """:func:`save_npy` for a cache: a file that cannot be written is a warning (only the next run is slower)."""
    try:
        save_npy(path, arr)
    except DataError as e:
        warnings.warn(f"token cache not saved, the next run tokenizes again: {e}", RuntimeWarning, stacklevel=3)


def load_token_cache(path: Path, n_vocab: int | None = None) -> np.ndarray | None:
    """The non-empty 1-D integer array saved at ``path`` (ids below ``n_vocab``), or None with a
    warning when the file is damaged (truncated, not .npy, the wrong shape): the caller rebuilds it."""
    try:
        arr = np.load(path)
    except (OSError, ValueError, EOFError) as e:
        problem = str(e) or type(e).__name__
    else:
        if arr.ndim == 1 and arr.dtype.kind in "iu" and arr.size and (n_vocab is None or int(arr.max()) < n_vocab):
            return arr
        problem = f"a {arr.dtype} array of shape {arr.shape}, not token ids of this tokenizer"
    warnings.warn(f"token cache {path} is damaged ({problem}); rebuilding it", RuntimeWarning, stacklevel=3)
    return None


def corpus_token_cache(names: list[str], tokenizer, tag: str = "") -> Path:
    """Cache path for the tokenized corpus of registry files ``names`` (:data:`gpt.io.downloads.REGISTRY`) under ``tokenizer``."""
    key = sha256_bytes(("|".join(resource(n).sha256 for n in names) + tokenizer_fingerprint(tokenizer) + tag).encode())[:16]
    return data_dir() / "cache" / f"tokens-{key}.npy"
