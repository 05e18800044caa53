"""The SMS Spam Collection, split for fine-tuning: a balanced split and a natural-distribution test split.

* :func:`make_splits` builds the splits from the collection (all 747 spam + 747 ham messages,
  1,045 / 149 / 300 for train / val / test, plus a natural test split with 13.4 % spam).
  Identical texts always land in the same split, so no message is tested on after training on it.
* :func:`load_splits` reads them from ``data/splits/*.csv``, built once and checked against the
  pinned sha256 of every file, so every machine trains and tests on the same messages (the files
  themselves, and the collection's, are :mod:`gpt.io.sms_files`).
* :func:`label_ids` turns label names into class ids (``ham`` = 0, ``spam`` = 1).

The re-splits experiments use (natural-distribution training, k-fold) are :mod:`gpt.experiments.splits`,
built from the same groups of identical texts (:func:`text_groups`, :func:`fill_with_groups`, :func:`split_frames`).
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError, DataError
from .io.sms_files import check_labels, load_sms_spam, read_split_csv, save_splits, split_files_to_rebuild, splits_dir


LABELS = ("ham", "spam")
LABEL_TO_ID = {name: i for i, name in enumerate(LABELS)}

SPLIT_SEED = 123
SPLIT_NAMES = ("train", "val", "test", "test_natural")
TRAIN_SPLITS = ("train", "train_natural")  # what a run may train on: the balanced train split, or gpt.experiments.splits.natural_train()
# Messages per (split, label) in the balanced split: 70 / 10 / 20 % of 1,494 = 1,045 / 149 / 300
# (the sizes published GPT-2 results use). Test is exactly balanced; train takes the rest.
BALANCED_COUNTS = {"test": {"ham": 150, "spam": 150}, "val": {"ham": 74, "spam": 75}}
N_BALANCED_HAM = 747  # as many ham as there are spam messages
# The natural test split is the balanced test split plus 819 ham messages from outside the
# balanced set: 150 spam in 1,119 messages = 13.4 %, the collection's 747 / 5,574.
N_NATURAL_EXTRA_HAM = 819


def fill_with_groups(groups: list[list[int]], order: np.ndarray, target: int, what: str) -> tuple[list[int], list[int]]:
    """Take whole groups in ``order`` while they fit, until exactly ``target`` rows are taken.

    Returns (positions of the taken groups, positions of the rest), both in ``order``. A group
    that does not fit in what is left is skipped (smaller groups, in the end singletons, fill the gap).
    """
    taken, rest, left = [], [], target
    for g in order:
        if 0 < len(groups[g]) <= left:
            taken.append(int(g))
            left -= len(groups[g])
        else:
            rest.append(int(g))
    if left:
        raise DataError(f"cannot fill {what} with exactly {target} messages from whole groups of identical texts")
    return taken, rest


def make_splits(df=None, seed: int = SPLIT_SEED) -> dict:
    """Build the splits from the SMS Spam Collection (``df`` from :func:`gpt.io.sms_files.load_sms_spam`).

    Returns ``{"train", "val", "test", "test_natural"}`` DataFrames with columns ``label``,
    ``text`` and ``line`` (the message's 1-based line in the original file).

    Construction (all random choices come from one ``numpy.random.Generator(PCG64(seed))``):

    1. Rows with identical text form a *group* (5,574 rows, 5,171 groups; no text carries two
       labels). Groups are never split, so no text is in two splits.
    2. Balanced set: all 747 spam rows, plus whole ham groups in random order until exactly 747
       ham rows are taken (a group that no longer fits is skipped; singletons fill the end).
    3. Per label, balanced groups in random order fill test (150 ham + 150 spam) exactly, then val
       (74 ham + 75 spam) exactly; the rest (523 ham + 522 spam) is train: 1,045 / 149 / 300.
    4. ``test_natural`` = the balanced test split + 819 ham rows (whole groups) from outside the
       balanced set: 1,119 messages, 150 spam (13.4 %, as in the whole collection). It shares no text
       with train or val, so a model trained on the balanced train split can be scored on it.
    5. Rows inside each split are shuffled.
    """

    if df is None:
        df = load_sms_spam()
    df = df.reset_index(drop=True)
    check_labels(df, "SMS collection")
    labels_per_text = df.groupby("text", sort=False)["label"].nunique()
    if (labels_per_text > 1).any():
        raise DataError(f"{int((labels_per_text > 1).sum())} texts appear with both labels; cannot split by text")
    rng = np.random.Generator(np.random.PCG64(seed))

    def order(n):  # a random order from uniform keys (PCG64's doubles are stable across numpy versions)
        return np.argsort(rng.random(n), kind="stable")

    groups = text_groups(df)  # row indices of identical texts, per label
    n_spam = sum(len(g) for g in groups["spam"])
    if n_spam != N_BALANCED_HAM:
        raise DataError(f"expected {N_BALANCED_HAM} spam messages, found {n_spam}")
    ham_in, ham_out = fill_with_groups(groups["ham"], order(len(groups["ham"])), N_BALANCED_HAM, "the balanced ham sample")
    balanced = {"ham": [groups["ham"][i] for i in ham_in], "spam": groups["spam"]}

    rows = {name: [] for name in ("train", "val", "test")}
    for lab in LABELS:
        gs = balanced[lab]
        o = order(len(gs))
        test, o = fill_with_groups(gs, o, BALANCED_COUNTS["test"][lab], f"test/{lab}")
        val, train = fill_with_groups(gs, np.array(o, dtype=np.int64), BALANCED_COUNTS["val"][lab], f"val/{lab}")
        for name, taken in (("test", test), ("val", val), ("train", train)):
            rows[name] += [i for g in taken for i in gs[g]]
    outside = [groups["ham"][i] for i in ham_out]
    extra, _ = fill_with_groups(outside, order(len(outside)), N_NATURAL_EXTRA_HAM, "the natural test split's extra ham")
    rows["test_natural"] = rows["test"] + [i for g in extra for i in outside[g]]

    return split_frames(df, {name: rows[name] for name in SPLIT_NAMES}, order)


def text_groups(df) -> dict[str, list[list[int]]]:
    """Row indices of identical texts, per label, in order of first appearance in the file."""
    groups = {}
    for lab in LABELS:
        by_text: dict[str, list[int]] = {}
        for i, (label, text) in enumerate(zip(df["label"], df["text"])):
            if label == lab:
                by_text.setdefault(text, []).append(i)
        groups[lab] = list(by_text.values())
    return groups


def split_frames(df, rows: dict, order) -> dict:
    """``{name: DataFrame}`` of the given row indices (shuffled, with the 1-based source ``line``)."""
    out = {}
    for name, r in rows.items():
        idx = np.array(sorted(r), dtype=np.int64)
        idx = idx[order(len(idx))]
        part = df.loc[idx, ["label", "text"]].copy()
        part["line"] = idx + 1
        out[name] = part.reset_index(drop=True)
    return out


def load_splits(rebuild: bool = False, check: bool = True) -> dict:
    """The four splits, read from ``data/splits/*.csv`` (built and saved there first if missing).

    With ``check``, every file's sha256 must equal the pinned :data:`gpt.io.sms_files.SPLIT_SHA256`: a cached file
    that differs is rebuilt, and a rebuild that still differs (another numpy or pandas writing
    different bytes) raises :class:`~gpt.errors.DataError` rather than training on other splits.
    """
    directory = splits_dir()
    paths = {name: directory / f"{name}.csv" for name in SPLIT_NAMES}
    if rebuild or split_files_to_rebuild(paths, check):
        save_splits(make_splits(), directory)
        bad = split_files_to_rebuild(paths, check)
        if bad:
            raise DataError(
                f"the rebuilt split file(s) {bad} differ from the pinned sha256 in gpt.io.sms_files.SPLIT_SHA256: "
                "this environment produces different splits (numpy/pandas version?)"
            )
    return {name: read_split_csv(paths[name]) for name in SPLIT_NAMES}


def label_ids(labels, names=LABELS) -> np.ndarray:
    """Label strings -> class ids: ``names[i]`` -> ``i`` ('ham'/'spam' -> 0/1 by default).

    Any other label is a :class:`~gpt.errors.ConfigError` (a ValueError) naming it."""
    labels, index = list(labels), {name: i for i, name in enumerate(names)}
    bad = sorted({l for l in labels if l not in index}, key=str)
    if bad:
        raise ConfigError(f"labels must be one of {list(names)}, got {bad[:5]}")
    return np.array([index[l] for l in labels], dtype=np.int64)

