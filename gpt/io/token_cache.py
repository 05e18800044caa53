"""Token caches: a tokenized corpus saved as ``.npy`` under ``data/cache``, so a run tokenizes it only once.
:func:`tokenize_with_cache` is :func:`gpt.data.tokenize_to_array` through such a cache.

A cache is named by what it was made from (:func:`corpus_token_cache`: the files' sha256, the tokenizer's
fingerprint and a tag), written in one step (:func:`gpt.io.files.atomic_write_bytes`) with the sha256 of
its bytes beside it (``<name>.npy.sha256``), and checked when read: a damaged file (truncated, not ``.npy``,
not token ids of this tokenizer), a file whose bytes no longer match the recorded sha256 (changed after it
was written: every id set to 7 is still valid ids), or one with no recorded sha256 (an older cache, or a
write cut short) is rebuilt with a warning. A cache that cannot be written is a warning too (only the next
run is slower). The hash costs one pass over a few MB, next to reading them.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np

from ..data import tokenize_to_array
from ..errors import DataError
from .downloads import cache_write_error, data_dir, resource
from .files import OutputError, atomic_write_bytes, atomic_write_text, sha256_bytes
from .tokenizer_files import tokenizer_fingerprint


def save_npy(path: Path, arr: np.ndarray) -> str:
    """Save ``arr`` to ``path`` in one step (:func:`gpt.io.files.atomic_write_bytes`) and return the sha256 of
    the bytes written; :class:`DataError` if it cannot be written. The temporary file is removed on any
    failure, Ctrl-C included."""
    buf = io.BytesIO()
    np.save(buf, arr)
    try:
        atomic_write_bytes(path, buf.getvalue())
        return sha256_bytes(buf.getvalue())
    except OutputError as e:
        cause = e.__cause__ if isinstance(e.__cause__, OSError) else OSError(str(e))
        raise cache_write_error(cause, Path(path)) from e


def hash_path(path: Path) -> Path:
    """Where the sha256 of the cache ``path`` is recorded: ``<name>.sha256`` beside it."""
    return Path(path).with_name(Path(path).name + ".sha256")


def save_token_cache(path: Path, arr: np.ndarray) -> None:
    """:func:`save_npy` for a cache, then the sha256 of its bytes (:func:`hash_path`); a file that cannot be
    written is a warning (only the next run is slower)."""
    try:
        atomic_write_text(hash_path(path), save_npy(path, arr) + "\n")
    except (DataError, OutputError) as e:
        warnings.warn(f"token cache not saved, the next run tokenizes again: {e}", RuntimeWarning, stacklevel=3)


def load_token_cache(path: Path, n_vocab: int | None = None) -> np.ndarray | None:
    """The non-empty 1-D integer array saved at ``path`` (ids below ``n_vocab``), or None with a warning
    when the file is damaged (truncated, not .npy, the wrong shape) or its bytes do not match the sha256
    :func:`save_token_cache` recorded (or none is recorded): the caller rebuilds it."""
    sidecar = hash_path(path)
    try:
        blob = Path(path).read_bytes()
        arr = np.load(io.BytesIO(blob))
    except (OSError, ValueError, EOFError) as e:
        problem = f"is damaged ({str(e) or type(e).__name__})"
    else:
        if not (arr.ndim == 1 and arr.dtype.kind in "iu" and arr.size and (n_vocab is None or int(arr.max()) < n_vocab)):
            problem = f"is damaged (a {arr.dtype} array of shape {arr.shape}, not token ids of this tokenizer)"
        else:
            try:
                recorded = sidecar.read_text(encoding="utf-8").strip()
            except (OSError, ValueError):
                recorded = None
            actual = sha256_bytes(blob)
            if recorded == actual:
                return arr
            problem = (f"has no recorded sha256 ({sidecar.name} is missing or unreadable: an older cache, or a write cut short)"
                       if recorded is None else
                       f"does not match its recorded sha256 (it has {actual[:12]}..., {sidecar.name} records {recorded[:12]}...: "
                       "changed after it was written)")
    warnings.warn(f"token cache {path} {problem}; rebuilding it", RuntimeWarning, stacklevel=3)
    return None


def corpus_token_cache(names: list[str], tokenizer, tag: str = "") -> Path:
    """Cache path for the tokenized corpus of registry files ``names`` (:data:`gpt.io.downloads.REGISTRY`) under ``tokenizer``."""
    key = sha256_bytes(("|".join(resource(n).sha256 for n in names) + tokenizer_fingerprint(tokenizer) + tag).encode())[:16]
    return data_dir() / "cache" / f"tokens-{key}.npy"


def tokenize_with_cache(texts, tokenizer, cache: str | os.PathLike, progress: bool = False) -> np.ndarray:
    """:func:`gpt.data.tokenize_to_array` of ``texts``, saved at ``cache`` as ``.npy`` the first time and loaded
    afterwards (a damaged file is rebuilt). The cache is only valid for the same texts and tokenizer; name it
    accordingly (see :func:`corpus_token_cache`)."""
    if Path(cache).exists():
        ids = load_token_cache(Path(cache), tokenizer.n_vocab)
        if ids is not None:
            return ids
    ids = tokenize_to_array(texts, tokenizer, progress=progress)
    save_token_cache(Path(cache), ids)
    return ids
