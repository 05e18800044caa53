"""Re-splits of the SMS Spam Collection that experiments train and test on, beside the pinned
balanced splits of :mod:`gpt.sms` (which a fine-tuning run uses by default).

* :func:`natural_train` is the natural-distribution training set: every message whose text is in
  none of val, test and test_natural (4,306 messages, 12.1 % spam; the balanced train split is part of it).
* :func:`kfold_splits` re-splits the whole collection into ``k`` folds of whole text groups: fold
  ``i``'s messages are its test split, so over the ``k`` folds every message is tested exactly once.
* :func:`run_splits` is what a fine-tuning run trains and tests on, given its config's choices
  (``train_split``, ``fold``, ``folds``).

Like :func:`gpt.sms.make_splits`, they never split a group of identical texts.
"""

from __future__ import annotations

import numpy as np

from ..checks import check_whole_number
from ..errors import ConfigError
from ..io.sms_files import check_labels, load_sms_spam
from ..sms import LABELS, SPLIT_NAMES, SPLIT_SEED, TRAIN_SPLITS, fill_with_groups, load_splits, split_frames, text_groups


def natural_train(splits: dict | None = None, df=None):
    """The natural-distribution training set: every message of the collection whose text is in none
    of ``splits``' val, test and test_natural (default: the pinned :func:`gpt.sms.load_splits`), in file order.

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

    1. Groups of identical texts (never split, as in :func:`gpt.sms.make_splits`), per label, are dealt in a
       random order to the fold that holds the fewest messages of that label so far: every fold gets
       about 1/``folds`` of the spam and of the ham.
    2. ``test_natural`` = all messages of fold ``fold`` (natural distribution, ~13.4 % spam);
       ``test`` = its spam plus as many of its ham (whole groups, random order): a balanced test.
    3. The other folds give a balanced set like :func:`gpt.sms.make_splits`' (all their spam, as many ham),
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

    groups = text_groups(df)
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
    test_ham, _ = fill_with_groups(ham_here, order(len(ham_here)), n_spam, f"fold {fold}'s balanced test ham")
    rows = {
        "test": [i for g in test_spam for i in g] + [i for k in test_ham for i in ham_here[k]],
        "test_natural": [i for lab in LABELS for g in member[lab][fold] for i in g],
        "train": [], "val": [],
    }
    others = {lab: [g for f in range(folds) if f != fold for g in member[lab][f]] for lab in LABELS}
    n_train_spam = sum(map(len, others["spam"]))
    ham_in, _ = fill_with_groups(others["ham"], order(len(others["ham"])), n_train_spam, f"fold {fold}'s balanced training ham")
    balanced = {"spam": others["spam"], "ham": [others["ham"][k] for k in ham_in]}
    for lab in LABELS:
        gs = balanced[lab]
        val, train = fill_with_groups(gs, order(len(gs)), n_train_spam // 8, f"fold {fold}'s val/{lab}")
        rows["val"] += [i for k in val for i in gs[k]]
        rows["train"] += [i for k in train for i in gs[k]]
    return split_frames(df, {name: rows[name] for name in SPLIT_NAMES}, order)


def run_splits(train_split: str = "train", fold: int | None = None, folds: int = 5) -> dict:
    """The splits a fine-tuning run uses: the pinned :func:`gpt.sms.load_splits` (or fold ``fold`` of
    :func:`kfold_splits`), plus ``"train_natural"`` (:func:`natural_train` of those splits) when
    ``train_split`` asks for it."""
    if train_split not in TRAIN_SPLITS:
        raise ConfigError(f"train_split must be one of {list(TRAIN_SPLITS)}, got {train_split!r}")
    splits = load_splits() if fold is None else kfold_splits(folds, fold)
    if train_split == "train_natural":
        splits["train_natural"] = natural_train(splits)
    return splits
