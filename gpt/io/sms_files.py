"""The SMS Spam Collection on disk: the collection's file, parsed, and the split CSV files, pinned by sha256.

* :func:`load_sms_spam` reads the verified collection (:func:`gpt.io.downloads.fetch`) into a DataFrame.
* :func:`save_splits` / :func:`read_split_csv` write and read the split files under :func:`splits_dir`;
  :data:`SPLIT_SHA256` pins their bytes, so every machine trains and tests on the same messages
  (:func:`split_files_to_rebuild`). How the splits are made is the task's: :mod:`gpt.sms`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .downloads import data_dir, fetch, read_text
from .files import atomic_write_bytes, sha256_file

FILE_LABELS = ("ham", "spam")  # the two labels the collection's file uses
# sha256 of the four CSV files written by save_splits() (pinned: the splits are identical on every machine).
SPLIT_SHA256 = {
    "train": "f9e24a1ad4f97f6b011ac91b415beb4573b66976a867505af7b50a4200c0dadb",
    "val": "f4f3595de850d95461e475cead250088461b96f3cd019a71caa266aadd16a375",
    "test": "6c0da913e632791b22bf85eec616637585b865c83819aefa40a26addb93227f6",
    "test_natural": "cf005df63570baa2c69cf19a331d7c21cc45a745eab5ba565bb8d4c7513e0f14",
}


def load_sms_spam():
    """The SMS Spam Collection as a DataFrame with columns ``label`` ('ham'/'spam') and ``text``.

    Each line is ``label<TAB>text``; it is split on the first TAB with no quote handling (a CSV
    reader with default quoting merges lines after messages starting with '"' and loses rows).
    """
    path = fetch("sms_spam")
    rows = []
    for n, line in enumerate(read_text(path).split("\n"), 1):
        if not line:
            continue
        label, sep, text = line.partition("\t")
        if not sep:
            raise DataError(f"{path}:{n}: no TAB between label and text")
        if label not in FILE_LABELS:
            raise DataError(f"{path}:{n}: label {label!r} is neither 'ham' nor 'spam'")
        rows.append((label, text))
    if not rows:
        raise DataError(f"{path} holds no messages; delete it and run again to fetch it")
    return pd.DataFrame(rows, columns=["label", "text"])


def check_labels(df, where: str) -> None:
    """:class:`DataError` naming ``where`` unless every label of ``df`` is 'ham' or 'spam'."""
    bad = sorted(set(df["label"]) - set(FILE_LABELS))
    if bad:
        raise DataError(f"{where}: labels must be 'ham' or 'spam', found {bad[:5]}")


def splits_dir() -> Path:
    """Where the split CSV files live: ``<data_dir>/splits``."""
    return data_dir() / "splits"


def _split_csv_bytes(df) -> bytes:
    return df.to_csv(index=False, lineterminator="\n").encode("utf-8")


def save_splits(splits: dict, directory: str | os.PathLike | None = None) -> dict[str, Path]:
    """Write each split as ``<directory>/<name>.csv`` (UTF-8, LF, quoted where needed); returns the paths."""
    directory = Path(directory) if directory else splits_dir()
    return {name: atomic_write_bytes(directory / f"{name}.csv", _split_csv_bytes(df)) for name, df in splits.items()}


def read_split_csv(path: str | os.PathLike):
    """One split file as a DataFrame (``label``, ``text``, ``line``); a label other than ham/spam is an error."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file {path} does not exist (or is not a file)")
    try:
        df = pd.read_csv(path, dtype={"label": str, "text": str}, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not valid UTF-8 ({e.reason} at byte {e.start})") from e
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
        raise DataError(f"{path} is not a readable CSV split file ({e})") from e
    missing = {"label", "text"} - set(df.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)}")
    check_labels(df, str(path))
    return df


def split_files_to_rebuild(paths: dict[str, Path], check: bool = True) -> list[str]:
    """The names of the split files in ``paths`` that are missing or (with ``check``) whose sha256 is not the pinned one."""
    def matches(name):
        want = SPLIT_SHA256.get(name)
        return paths[name].exists() and (not check or want is None or sha256_file(paths[name]) == want)

    return [name for name in paths if not matches(name)]
