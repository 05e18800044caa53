"""The SMS Spam Collection, split for fine-tuning: a balanced split and a natural-distribution test split.

* :func:`make_splits` builds the splits from the collection (all 747 spam + 747 ham messages,
  1,045 / 149 / 300 for train / val / test, plus a natural test split with 13.4 % spam).
  Identical texts always land in the same split, so no message is tested on after training on it.
* :func:`load_splits` reads them from ``data/splits/*.csv``, built once and checked against the
  pinned sha256 of every file, so every machine trains and tests on the same messages (the files
  themselves, and the collection's, are :mod:`gpt.io.sms_files`).
* :func:`natural_train` is the natural-distribution training set: every message whose text is in
  none of val, test and test_natural (4,306 messages, 12.1 % spam; the balanced train split is part of it).
* :func:`kfold_splits` re-splits the whole collection into ``k`` folds of whole text groups: fold
  ``i``'s messages are its test split, so over the ``k`` folds every message is tested exactly once.
* :func:`run_splits` is what a fine-tuning run trains and tests on, given its config's choices.
* :func:`label_ids` turns label names into class ids (``ham`` = 0, ``spam`` = 1).
"""

from __future__ import annotations

import numpy as np

from .checks import check_whole_number
from .errors import ConfigError, DataError
from .io.sms_files import check_labels, load_sms_spam, read_split_csv, save_splits, split_files_to_rebuild, splits_dir


LABELS = ("ham", "spam")
LABEL_TO_ID = {name: i for i, name in enumerate(LABELS)}

SPLIT_SEED = 123
SPLIT_NAMES = ("train", "val", "test", "test_natural")
TRAIN_SPLITS = ("train", "train_natural")  # what a run may train on: the balanced train split, or natural_train()
# Messages per (split, label) in the balanced split: 70 / 10 / 20 % of 1,494 = 1,045 / 149 / 300
# (the sizes published GPT-2 results use). Test is exactly balanced; train takes the rest.
BALANCED_COUNTS = {"test": {"ham": 150, "spam": 150}, "val": {"ham": 74, "spam": 75}}
N_BALANCED_HAM = 747  # as many ham as there are spam messages
# The natural test split is the balanced test split plus 819 ham messages from outside the
# balanced set: 150 spam in 1,119 messages = 13.4 %, the collection's 747 / 5,574.
N_NATURAL_EXTRA_HAM = 819


def _fill_exact(groups: list[list[int]], order: np.ndarray, target: int, what: str) -> tuple[list[int], list[int]]:
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

    groups = _groups_by_label(df)  # row indices of identical texts, per label
    n_spam = sum(len(g) for g in groups["spam"])
    if n_spam != N_BALANCED_HAM:
        raise DataError(f"expected {N_BALANCED_HAM} spam messages, found {n_spam}")
    ham_in, ham_out = _fill_exact(groups["ham"], order(len(groups["ham"])), N_BALANCED_HAM, "the balanced ham sample")
    balanced = {"ham": [groups["ham"][i] for i in ham_in], "spam": groups["spam"]}

    rows = {name: [] for name in ("train", "val", "test")}
    for lab in LABELS:
        gs = balanced[lab]
        o = order(len(gs))
        test, o = _fill_exact(gs, o, BALANCED_COUNTS["test"][lab], f"test/{lab}")
        val, train = _fill_exact(gs, np.array(o, dtype=np.int64), BALANCED_COUNTS["val"][lab], f"val/{lab}")
        for name, taken in (("test", test), ("val", val), ("train", train)):
            rows[name] += [i for g in taken for i in gs[g]]
    outside = [groups["ham"][i] for i in ham_out]
    extra, _ = _fill_exact(outside, order(len(outside)), N_NATURAL_EXTRA_HAM, "the natural test split's extra ham")
    rows["test_natural"] = rows["test"] + [i for g in extra for i in outside[g]]

    return _frames(df, {name: rows[name] for name in SPLIT_NAMES}, order)


def _groups_by_label(df) -> dict[str, list[list[int]]]:
    """Row indices of identical texts, per label, in order of first appearance in the file."""
    groups = {}
    for lab in LABELS:
        by_text: dict[str, list[int]] = {}
        for i, (label, text) in enumerate(zip(df["label"], df["text"])):
            if label == lab:
                by_text.setdefault(text, []).append(i)
        groups[lab] = list(by_text.values())
    return groups


def _frames(df, rows: dict, order) -> dict:
    """``{name: DataFrame}`` of the given row indices (shuffled, with the 1-based source ``line``)."""
    out = {}
    for name, r in rows.items():
        idx = np.array(sorted(r), dtype=np.int64)
        idx = idx[order(len(idx))]
        part = df.loc[idx, ["label", "text"]].copy()
        part["line"] = idx + 1
        out[name] = part.reset_index(drop=True)
    return out


def natural_train(splits: dict | None = None, df=None):
    """The natural-distribution training set: every message of the collection whose text is in none
    of ``splits``' val, test and test_natural (default: the pinned :func:`load_splits`), in file order.

    4,306 messages (3,784 ham, 522 spam: 12.1 %), duplicates kept as in the collection; the balanced
    train split is a part of it (the same 522 spam, 3,261 more ham), so training on it changes only
    how many ham messages the model sees. Columns ``label``, ``text``, ``line``.
    """
    if splits is None:
        splits = load_splits()
    if df is None:
        df = load_sms_spam()
    df = df.reset_index(drop=True)
    held_out = set().union(*(set(splits[n]["text"]) for n in ("val", "test", "test_natural")))
    keep = ~df["text"].isin(held_out)
    part = df.loc[keep, ["label", "text"]].copy()
    part["line"] = np.flatnonzero(keep.to_numpy()) + 1
    return part.reset_index(drop=True)


def kfold_splits(folds: int = 5, fold: int = 0, df=None, seed: int = SPLIT_SEED) -> dict:
    """Fold ``fold`` of a ``folds``-fold re-split of the whole collection, for conclusions that rest on
    all 5,574 messages instead of one 300-message test split.

    1. Groups of identical texts (never split, as in :func:`make_splits`), per label, are dealt in a
       random order to the fold that holds the fewest messages of that label so far: every fold gets
       about 1/``folds`` of the spam and of the ham.
    2. ``test_natural`` = all messages of fold ``fold`` (natural distribution, ~13.4 % spam);
       ``test`` = its spam plus as many of its ham (whole groups, random order): a balanced test.
    3. The other folds give a balanced set like :func:`make_splits`' (all their spam, as many ham),
       of which 1/8 of each label (whole groups) is ``val`` and the rest ``train``.

    Every message is in exactly one fold's ``test_natural``; no text is in two splits of a fold.
    Deterministic for a given ``(folds, fold, seed)``; the collection is sha256-checked on load.
    """
    check_whole_number("folds", folds, minimum=2, maximum=20)
    check_whole_number("fold", fold, minimum=0, maximum=folds - 1)  # folds - 1: the last fold
    if df is None:
        df = load_sms_spam()
    df = df.reset_index(drop=True)
    check_labels(df, "SMS collection")
    rng = np.random.Generator(np.random.PCG64([seed, folds]))

    def order(n):
        return np.argsort(rng.random(n), kind="stable")

    groups = _groups_by_label(df)
    member = {lab: [[] for _ in range(folds)] for lab in LABELS}  # label -> fold -> groups
    for lab in LABELS:
        sizes = np.zeros(folds, dtype=np.int64)
        for g in order(len(groups[lab])):
            f = int(np.argmin(sizes))  # the first of the smallest folds
            member[lab][f].append(groups[lab][g])
            sizes[f] += len(groups[lab][g])
    test_spam = member["spam"][fold]
    n_spam = sum(map(len, test_spam))
    ham_here = member["ham"][fold]
    test_ham, _ = _fill_exact(ham_here, order(len(ham_here)), n_spam, f"fold {fold}'s balanced test ham")
    rows = {
        "test": [i for g in test_spam for i in g] + [i for k in test_ham for i in ham_here[k]],
        "test_natural": [i for lab in LABELS for g in member[lab][fold] for i in g],
        "train": [], "val": [],
    }
    others = {lab: [g for f in range(folds) if f != fold for g in member[lab][f]] for lab in LABELS}
    n_train_spam = sum(map(len, others["spam"]))
    ham_in, _ = _fill_exact(others["ham"], order(len(others["ham"])), n_train_spam, f"fold {fold}'s balanced training ham")
    balanced = {"spam": others["spam"], "ham": [others["ham"][k] for k in ham_in]}
    for lab in LABELS:
        gs = balanced[lab]
        val, train = _fill_exact(gs, order(len(gs)), n_train_spam // 8, f"fold {fold}'s val/{lab}")
        rows["val"] += [i for k in val for i in gs[k]]
        rows["train"] += [i for k in train for i in gs[k]]
    return _frames(df, {name: rows[name] for name in SPLIT_NAMES}, order)


def run_splits(train_split: str = "train", fold: int | None = None, folds: int = 5) -> dict:
    """The splits a fine-tuning run uses: the pinned :func:`load_splits` (or fold ``fold`` of
    :func:`kfold_splits`), plus ``"train_natural"`` (:func:`natural_train` of those splits) when
    ``train_split`` asks for it."""
    if train_split not in TRAIN_SPLITS:
        raise ConfigError(f"train_split must be one of {list(TRAIN_SPLITS)}, got {train_split!r}")
    splits = load_splits() if fold is None else kfold_splits(folds, fold)
    if train_split == "train_natural":
        splits["train_natural"] = natural_train(splits)
    return splits


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

