"""Fine-tuning the GPT to classify SMS messages as ham or spam.

The pieces, in the order notebook 05 uses them:

* **Splits** (:func:`make_splits`, :func:`load_splits`): a balanced split of the SMS Spam
  Collection (all 747 spam + 747 ham, 1,045 / 149 / 300 for train / val / test) and a
  natural-distribution test split (13.4 % spam). Identical texts always land in the same split.
* **The classifier** (:class:`GPTClassifier`): the GPT with its language-model head replaced by a
  ``head`` = ``nn.Linear(n_embd, num_classes)`` that reads the hidden state of the *last real
  token* of every message (never a padding token).
* **Strategies** (:func:`set_trainable`): ``"full"``, ``"last-block"`` or ``"head"``; the command
  line adds ``"lora"`` (:func:`gpt.lora.apply_lora` on every Linear in the blocks, head trainable).
* **Training** (:func:`finetune`): works for any model whose trainable parameters the caller chose
  (the LoRA module calls it with only its adapters trainable).
* **Evaluation** (:func:`evaluate`, :func:`classification_metrics`, :func:`classify`).
* **Baseline** (:func:`train_baseline`): bag-of-words logistic regression written in torch.
* **Command line** (:func:`register_cli`): ``python -m gpt finetune --strategy ... --seeds 0 1 2``
  (``--strategy lora --rank 8`` for LoRA); ``python -m gpt experiment`` (:mod:`gpt.experiment`) runs them all.

Conventions: label 0 is ``ham``, label 1 is ``spam``; spam is the positive class of precision,
recall and F1. Messages are tokenized with the course tokenizer, padded on the right with
``<|endoftext|>``, and truncated to the model's context (the first ``context_length`` tokens are
kept; 2 of the 5,574 messages are longer than 256 tokens).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import shlex
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import regex
import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import DataError, data_dir, sha256_file
from .model import GPT, GPTConfig, count_parameters
from .train import CheckpointError, autocast, make_optimizer, pick_device, read_checkpoint, resolve_precision

LABELS = ("ham", "spam")
LABEL_TO_ID = {name: i for i, name in enumerate(LABELS)}
STRATEGIES = ("full", "last-block", "head")

# ---------------------------------------------------------------------------------------------
# Splits

SPLIT_SEED = 123
SPLIT_NAMES = ("train", "val", "test", "test_natural")
# Messages per (split, label) in the balanced split: 70 / 10 / 20 % of 1,494 = 1,045 / 149 / 300
# (the sizes published GPT-2 results use). Test is exactly balanced; train takes the rest.
BALANCED_COUNTS = {"test": {"ham": 150, "spam": 150}, "val": {"ham": 74, "spam": 75}}
N_BALANCED_HAM = 747  # as many ham as there are spam messages
# The natural test split is the balanced test split plus 819 ham messages from outside the
# balanced set: 150 spam in 1,119 messages = 13.4 %, the collection's 747 / 5,574.
N_NATURAL_EXTRA_HAM = 819
# sha256 of the four CSV files written by save_splits() (pinned: the splits are identical on every machine).
SPLIT_SHA256 = {
    "train": "f9e24a1ad4f97f6b011ac91b415beb4573b66976a867505af7b50a4200c0dadb",
    "val": "f4f3595de850d95461e475cead250088461b96f3cd019a71caa266aadd16a375",
    "test": "6c0da913e632791b22bf85eec616637585b865c83819aefa40a26addb93227f6",
    "test_natural": "cf005df63570baa2c69cf19a331d7c21cc45a745eab5ba565bb8d4c7513e0f14",
}


def splits_dir() -> Path:
    """Where the split CSV files live: ``<data_dir>/splits``."""
    return data_dir() / "splits"


def _check_labels(df, where: str) -> None:
    bad = sorted(set(df["label"]) - set(LABELS))
    if bad:
        raise DataError(f"{where}: labels must be 'ham' or 'spam', found {bad[:5]}")


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
    """Build the splits from the SMS Spam Collection (``df`` from :func:`gpt.data.load_sms_spam`).

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
        from .data import load_sms_spam

        df = load_sms_spam()
    df = df.reset_index(drop=True)
    _check_labels(df, "SMS collection")
    labels_per_text = df.groupby("text", sort=False)["label"].nunique()
    if (labels_per_text > 1).any():
        raise DataError(f"{int((labels_per_text > 1).sum())} texts appear with both labels; cannot split by text")
    rng = np.random.Generator(np.random.PCG64(seed))

    def order(n):  # a random order from uniform keys (PCG64's doubles are stable across numpy versions)
        return np.argsort(rng.random(n), kind="stable")

    # groups of row indices per label, in order of first appearance in the file
    groups = {}
    for lab in LABELS:
        by_text: dict[str, list[int]] = {}  # insertion order: first appearance in the file
        for i, (label, text) in enumerate(zip(df["label"], df["text"])):
            if label == lab:
                by_text.setdefault(text, []).append(i)
        groups[lab] = list(by_text.values())
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

    out = {}
    for name in SPLIT_NAMES:
        idx = np.array(sorted(rows[name]), dtype=np.int64)
        idx = idx[order(len(idx))]
        part = df.loc[idx, ["label", "text"]].copy()
        part["line"] = idx + 1
        out[name] = part.reset_index(drop=True)
    return out


def _split_csv_bytes(df) -> bytes:
    return df.to_csv(index=False, lineterminator="\n").encode("utf-8")


def save_splits(splits: dict, directory: str | os.PathLike | None = None) -> dict[str, Path]:
    """Write each split as ``<directory>/<name>.csv`` (UTF-8, LF, quoted where needed); returns the paths."""
    directory = Path(directory) if directory else splits_dir()
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, df in splits.items():
        path = directory / f"{name}.csv"
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(_split_csv_bytes(df))
        os.replace(tmp, path)
        paths[name] = path
    return paths


def read_split_csv(path: str | os.PathLike):
    """One split file as a DataFrame (``label``, ``text``, ``line``); a label other than ham/spam is an error."""
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={"label": str, "text": str}, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not valid UTF-8 ({e.reason} at byte {e.start})") from e
    missing = {"label", "text"} - set(df.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)}")
    _check_labels(df, str(path))
    return df


def load_splits(rebuild: bool = False, check: bool = True) -> dict:
    """The four splits, read from ``data/splits/*.csv`` (built and saved there first if missing).

    With ``check``, every file's sha256 must equal the pinned :data:`SPLIT_SHA256`: a cached file
    that differs is rebuilt, and a rebuild that still differs (another numpy or pandas writing
    different bytes) raises :class:`~gpt.data.DataError` rather than training on other splits.
    """
    directory = splits_dir()
    paths = {name: directory / f"{name}.csv" for name in SPLIT_NAMES}

    def matches(name):
        want = SPLIT_SHA256.get(name)
        return paths[name].exists() and (not check or want is None or sha256_file(paths[name]) == want)

    if rebuild or not all(matches(n) for n in SPLIT_NAMES):
        save_splits(make_splits(), directory)
        bad = [n for n in SPLIT_NAMES if not matches(n)]
        if bad:
            raise DataError(
                f"the rebuilt split file(s) {bad} differ from the pinned sha256 in gpt.classify.SPLIT_SHA256: "
                "this environment produces different splits (numpy/pandas version?)"
            )
    return {name: read_split_csv(paths[name]) for name in SPLIT_NAMES}


def label_ids(labels, names=LABELS) -> np.ndarray:
    """Label strings -> class ids: ``names[i]`` -> ``i`` ('ham'/'spam' -> 0/1 by default).

    Any other label is a ValueError naming it."""
    labels, index = list(labels), {name: i for i, name in enumerate(names)}
    bad = sorted({l for l in labels if l not in index}, key=str)
    if bad:
        raise ValueError(f"labels must be one of {list(names)}, got {bad[:5]}")
    return np.array([index[l] for l in labels], dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Tokens, padding and the classifier


def _as_text(message) -> str:
    """A message as str: bytes must be UTF-8; empty or whitespace-only messages are rejected."""
    if isinstance(message, (bytes, bytearray)):
        try:
            message = bytes(message).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"message is not valid UTF-8: {e.reason} at byte {e.start}") from e
    if not isinstance(message, str):
        raise TypeError(f"a message must be str or UTF-8 bytes, got {type(message).__name__}")
    try:
        message.encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates, e.g. from decoding with errors="surrogateescape"
        raise ValueError(f"message is not valid Unicode text: {e.reason} at position {e.start}") from e
    if not message.strip():
        raise ValueError("empty message: there is nothing to classify")
    return message


def encode_messages(texts, tokenizer, max_length: int) -> tuple[list[list[int]], int]:
    """Token ids of every message, each cut to its first ``max_length`` tokens.

    Returns ``(ids, n_truncated)``. Every message must be non-empty text (see :func:`classify`).
    """
    out, n_truncated = [], 0
    for t in texts:
        ids = tokenizer.encode_ordinary(_as_text(t))
        if len(ids) > max_length:
            ids, n_truncated = ids[:max_length], n_truncated + 1
        out.append(ids)
    return out, n_truncated


def pad_batch(seqs: list[list[int]], pad_id: int, pad_to: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists with ``pad_id`` into ``(ids (B, T), lengths (B,))``.

    ``T`` is the longest sequence, or ``pad_to`` if given (for the padding lesson and tests).
    """
    if not seqs or any(len(s) == 0 for s in seqs):
        raise ValueError("pad_batch needs at least one sequence, and no empty sequence")
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    T = int(lengths.max()) if pad_to is None else pad_to
    if T < int(lengths.max()):
        raise ValueError(f"pad_to={pad_to} is shorter than the longest sequence ({int(lengths.max())})")
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return ids, lengths


class GPTClassifier(GPT):
    """A :class:`~gpt.model.GPT` whose language-model head is replaced by a classification ``head``.

    ``forward(idx, lengths)`` runs the transformer on right-padded token ids ``idx`` (B, T) and
    returns class logits (B, num_classes) computed from the hidden state at position
    ``lengths - 1``: the last *real* token of every row. Thanks to the causal mask that hidden
    state never sees the padding after it, so the prediction does not depend on how much padding
    there is. Without ``lengths`` every row is taken to end at ``T - 1`` (no padding).

    Attributes the LoRA module relies on: ``blocks`` (the transformer blocks), ``ln_f`` and
    ``head`` (``nn.Linear(n_embd, num_classes)``). The GPT's ``lm_head`` is removed (its weight
    was the token embedding, which stays).
    """

    def __init__(self, config: GPTConfig, num_classes: int = 2, classifier_dropout: float = 0.0):
        super().__init__(config)
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        del self.lm_head
        self.num_classes = num_classes
        self.classifier_dropout = nn.Dropout(classifier_dropout)
        self.head = nn.Linear(config.n_embd, num_classes)
        nn.init.normal_(self.head.weight, mean=0.0, std=0.02)
        nn.init.zeros_(self.head.bias)

    def last_token_states(self, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden state (B, C) of each row's last real token (position ``lengths - 1``)."""
        h = self.hidden_states(idx)  # (B, T, C)
        B, T, _ = h.shape
        if lengths is None:
            return h[:, -1, :]
        lengths = lengths.to(h.device)
        if lengths.shape != (B,) or int(lengths.min()) < 1 or int(lengths.max()) > T:
            raise ValueError(f"lengths must be {B} integers in [1, {T}], got {lengths.tolist()}")
        return h[torch.arange(B, device=h.device), lengths - 1]  # (B, C)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.classifier_dropout(self.last_token_states(idx, lengths)))  # (B, num_classes)

    def generate(self, *args, **kwargs):
        raise TypeError("a GPTClassifier has no language-model head; it cannot generate text")

    @classmethod
    def from_gpt(cls, gpt: GPT, num_classes: int = 2, classifier_dropout: float = 0.0, seed: int = 0) -> "GPTClassifier":
        """A classifier with ``gpt``'s weights (copied) and a new head initialised from ``seed``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(gpt.config, num_classes, classifier_dropout)
        state = {k: v for k, v in gpt.state_dict().items() if not k.startswith("lm_head.")}
        _load_body(model, state, source="the GPT")
        return model.to(next(gpt.parameters()).device)


def _load_body(model: GPTClassifier, state: dict, source: str) -> None:
    """Load every tensor except the head; a missing, extra or mis-shaped tensor is a CheckpointError."""
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    state = {k: v for k, v in state.items() if k != "lm_head.weight"}
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source} does not match the classifier: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise CheckpointError(f"{source}: tensor {k!r} has shape {tuple(v.shape)}, the model expects {tuple(expected[k].shape)}")
    model.load_state_dict(state, strict=False)


class VocabularyMismatchError(CheckpointError):
    """The checkpoint was trained with another vocabulary than the tokenizer in use."""


def check_vocabulary(config: GPTConfig, tokenizer, fingerprint: str | None = None, source: str = "the checkpoint") -> None:
    """Raise :class:`VocabularyMismatchError` unless the model's vocabulary is the tokenizer's.

    Checks the size (``config.vocab_size`` vs ``tokenizer.n_vocab``) and, when the checkpoint
    records one, the ``tokenizer_fingerprint`` (same size, different tokens is caught too).
    """
    from .tokenizer import tokenizer_fingerprint

    if config.vocab_size != tokenizer.n_vocab:
        raise VocabularyMismatchError(
            f"{source} has a vocabulary of {config.vocab_size} tokens but the tokenizer {tokenizer.name!r} has "
            f"{tokenizer.n_vocab}: token ids would mean different things. Use the tokenizer the model was pretrained with."
        )
    if fingerprint is not None and fingerprint != tokenizer_fingerprint(tokenizer):
        raise VocabularyMismatchError(
            f"{source} was pretrained with tokenizer fingerprint {fingerprint}, but the tokenizer {tokenizer.name!r} "
            f"has fingerprint {tokenizer_fingerprint(tokenizer)}: same size, different tokens."
        )


def classifier_from_checkpoint(
    path: str | os.PathLike | None = None,
    num_classes: int = 2,
    classifier_dropout: float = 0.0,
    dropout: float | None = None,
    tokenizer=None,
    seed: int = 0,
    device="cpu",
) -> GPTClassifier:
    """A :class:`GPTClassifier` from a pretrained GPT checkpoint (default: the reference model).

    The vocabulary is checked against ``tokenizer`` (default: the course tokenizer, see
    :func:`check_vocabulary`). ``dropout`` overrides the transformer's dropout; the head is
    initialised from ``seed``.
    """
    from .reference import reference_path
    from .tokenizer import course_tokenizer

    path = Path(path) if path else reference_path()
    config, state, meta = read_checkpoint(path)
    check_vocabulary(config, tokenizer or course_tokenizer(), meta.get("tokenizer_fingerprint"), source=str(path))
    if dropout is not None:
        config = dataclasses.replace(config, dropout=dropout)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPTClassifier(config, num_classes, classifier_dropout)
    _load_body(model, state, source=str(path))
    return model.to(device)


def set_trainable(model: nn.Module, strategy: str) -> dict:
    """Freeze / unfreeze ``model``'s parameters for a fine-tuning strategy; returns the counts.

    * ``"full"``: every parameter trains.
    * ``"last-block"``: the last transformer block, the final LayerNorm ``ln_f`` and ``head``.
    * ``"head"``: only ``head`` (``n_embd * num_classes + num_classes`` parameters).

    Returns ``{"trainable": int, "total": int}`` (a tied weight counts once).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    for p in model.parameters():
        p.requires_grad_(strategy == "full")
    if strategy == "last-block":
        for m in (model.blocks[-1], model.ln_f):
            m.requires_grad_(True)
    model.head.requires_grad_(True)
    return {"trainable": count_parameters(model, trainable_only=True), "total": count_parameters(model)}


# ---------------------------------------------------------------------------------------------
# Metrics and evaluation


def classification_metrics(y_true, y_pred) -> dict:
    """Accuracy, and precision / recall / F1 of the positive class (1 = spam), plus the confusion matrix.

    ``confusion[i][j]`` counts messages of true class ``i`` predicted as ``j`` (rows: true ham,
    true spam). A precision or recall whose denominator is 0 is reported as 0.
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError("y_true and y_pred must be non-empty 1-D arrays of the same length")
    tp = int(((y_true == 1) & (y_pred == 1)).sum())
    fp = int(((y_true == 0) & (y_pred == 1)).sum())
    fn = int(((y_true == 1) & (y_pred == 0)).sum())
    tn = int(((y_true == 0) & (y_pred == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_true == y_pred).mean()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "confusion": [[tn, fp], [fn, tp]],
    }


def _tokenizer_for(model, tokenizer):
    from .tokenizer import course_tokenizer

    tokenizer = tokenizer or course_tokenizer()
    check_vocabulary(model.config, tokenizer, source="the model")
    return tokenizer


def _length_sorted_batches(lengths, batch_size: int):
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def predict_proba(model: GPTClassifier, texts, tokenizer=None, batch_size: int = 64, device=None, precision: str = "fp32") -> np.ndarray:
    """Class probabilities (N, num_classes) for ``texts`` (messages longer than the context are truncated)."""
    tokenizer = _tokenizer_for(model, tokenizer)
    ids, _ = encode_messages(texts, tokenizer, model.config.context_length)
    return _predict_ids(model, ids, tokenizer.eot_token, batch_size, device, precision)


@torch.no_grad()
def _predict_ids(model, ids, pad_id, batch_size=64, device=None, precision="fp32") -> np.ndarray:
    device = device or next(model.parameters()).device
    was = model.training
    model.eval()
    out = np.zeros((len(ids), model.num_classes), dtype=np.float64)
    for b in _length_sorted_batches([len(s) for s in ids], batch_size):  # less padding; order restored below
        x, lengths = pad_batch([ids[i] for i in b], pad_id)
        with autocast(torch.device(device), precision):
            logits = model(x.to(device), lengths.to(device))
        out[b] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    model.train(was)
    return out


def evaluate(
    model: GPTClassifier, df, tokenizer=None, batch_size: int = 64, device=None, precision: str = "fp32", labels=LABELS
) -> dict:
    """Loss and :func:`classification_metrics` of ``model`` on a split (DataFrame with ``label``, ``text``).

    ``labels``: the class names in class-id order (default ham, spam; the second is the "positive"
    class of precision / recall / F1). Also returns ``spam_probability`` (the probability of
    ``labels[1]``) and ``predicted`` (label names) per message (lists, in ``df`` order).
    """
    probs = predict_proba(model, df["text"].tolist(), tokenizer, batch_size, device, precision)
    return _metrics_from_probs(label_ids(df["label"], labels), probs, labels)


def _metrics_from_probs(y: np.ndarray, probs: np.ndarray, labels=LABELS) -> dict:
    pred = probs.argmax(axis=1)
    m = classification_metrics(y, pred)
    m["loss"] = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())
    m["spam_probability"] = probs[:, 1].tolist()
    m["predicted"] = [labels[i] for i in pred]
    return m


class Prediction(NamedTuple):
    label: str  # "ham" or "spam"
    spam_probability: float


@torch.no_grad()
def classify(model: GPTClassifier, message, tokenizer=None) -> Prediction:
    """Classify one SMS: returns ``Prediction(label, spam_probability)`` (unpacks as a tuple).

    ``message`` is a str or UTF-8 bytes. Handling of bad input:

    * empty or whitespace-only message, bytes that are not UTF-8, text with lone surrogates:
      ``ValueError``; anything but str/bytes: ``TypeError``;
    * a message longer than the model's context (256 tokens for the reference model, roughly
      1,000 characters) is truncated to its first ``context_length`` tokens, with a ``UserWarning``;
    * a tokenizer whose vocabulary is not the model's: :class:`VocabularyMismatchError`.
    """
    if model.num_classes != len(LABELS):
        raise ValueError(f"classify() needs a ham/spam model with 2 classes, this one has {model.num_classes}")
    tokenizer = _tokenizer_for(model, tokenizer)
    ids, n_truncated = encode_messages([message], tokenizer, model.config.context_length)
    if n_truncated:
        warnings.warn(
            f"the message is longer than the model's context; only its first {model.config.context_length} tokens were read",
            stacklevel=2,
        )
    p = _predict_ids(model, ids, tokenizer.eot_token)[0]
    return Prediction(LABELS[int(p.argmax())], float(p[1]))


# ---------------------------------------------------------------------------------------------
# Memory accounting


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Peak memory of the code inside ``with PeakMemory(device) as pm: ...``; read ``pm.peak_bytes``.

    * CUDA: ``torch.cuda.max_memory_allocated`` (reset on entry) minus the memory allocated on
      entry: the tensors the run allocated on top of what was already there. ``method="cuda_max_allocated"``.
    * CPU on Linux: the process's resident set size (RSS), read from ``/proc/self/statm`` every
      ``interval`` seconds by a background thread; the peak minus the RSS on entry.
      ``method="rss_sampled"``. It counts everything the process touched (the allocator's caches
      too) and can miss a spike shorter than the interval; in a process that already ran a bigger
      job it can read low, because freed memory is reused. The command line runs each run in a
      fresh process for that reason.
    * elsewhere: ``method="unavailable"``, ``peak_bytes=None``.
    """

    def __init__(self, device, interval: float = 0.005):
        self.device = torch.device(device)
        self.interval = interval
        self.peak_bytes: int | None = None
        self.method = "unavailable"

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "cuda_max_allocated"
        elif _rss_bytes() is not None:
            self._start = _rss_bytes()
            self._peak = self._start
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
            self.method = "rss_sampled"
        return self

    def _sample(self):
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss_bytes() or 0)
            self._stop.wait(self.interval)

    def __exit__(self, *exc):
        if self.method == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = int(torch.cuda.max_memory_allocated(self.device) - self._start)
        elif self.method == "rss_sampled":
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _rss_bytes() or 0)
            self.peak_bytes = int(self._peak - self._start)
        return False


class SavedActivations:
    """Bytes of the tensors autograd saves for the backward pass (the activations), per forward.

    Used as ``with meter.track(): loss = ...`` around each forward; ``meter.peak_bytes`` is the
    largest total over the tracked forwards. Storages shared by several saved tensors count once,
    and the model's parameters (also saved, e.g. for the input gradient of a linear layer) do not count.
    """

    def __init__(self, model: nn.Module):
        self._param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.peak_bytes = 0

    def track(self):
        seen: dict[int, int] = {}
        meter = self

        def pack(t):
            try:
                s = t.untyped_storage()
                key = s.data_ptr()
                if key not in meter._param_storages and key not in seen:
                    seen[key] = s.nbytes()
                    meter.peak_bytes = max(meter.peak_bytes, sum(seen.values()))
            except (RuntimeError, NotImplementedError):
                pass
            return t

        return torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in the optimizer's state tensors (AdamW: ``exp_avg`` and ``exp_avg_sq`` per trainable parameter)."""
    return int(sum(v.nbytes for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)))


# ---------------------------------------------------------------------------------------------
# Fine-tuning


def _trainable_state(model: nn.Module) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _train_batches(lengths, batch_size: int, generator: torch.Generator, bucket: int) -> list[np.ndarray]:
    """Shuffled batches; with ``bucket`` > 1, chunks of ``bucket * batch_size`` shuffled messages are
    sorted by length before batching (less padding), and the batches are shuffled again."""
    n = len(lengths)
    perm = torch.randperm(n, generator=generator).numpy()
    if bucket > 1:
        chunks = [perm[i : i + bucket * batch_size] for i in range(0, n, bucket * batch_size)]
        perm = np.concatenate([c[np.argsort(np.asarray(lengths)[c], kind="stable")] for c in chunks])
    batches = [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]


def finetune(
    model: GPTClassifier,
    splits: dict,
    *,
    tokenizer=None,
    epochs: int = 5,
    lr: float = 5e-4,
    batch_size: int = 16,
    weight_decay: float = 0.0,
    warmup_fraction: float = 0.1,
    grad_clip: float | None = 1.0,
    seed: int = 0,
    device: str = "cpu",
    precision: str = "auto",
    bucket: int = 8,
    eval_splits=("test", "test_natural"),
    progress: bool = True,
    labels=LABELS,
) -> dict:
    """Train ``model`` on ``splits["train"]``, keep the epoch with the best validation accuracy.

    Only the parameters with ``requires_grad`` train: choose them first with
    :func:`set_trainable` (or, for LoRA, freeze everything but the adapters). The optimizer is
    AdamW (:func:`gpt.train.make_optimizer`) over those parameters only; the learning rate warms
    up linearly over ``warmup_fraction`` of the steps and then decays linearly to 0. ``seed``
    fixes the batch order and the dropout masks. ``precision`` applies to the training steps
    (``"auto"``: bf16 autocast where the CPU or GPU has fast bf16, as in pretraining, else fp32);
    every evaluation runs in fp32. ``splits`` maps names to DataFrames with
    ``label`` and ``text`` columns; it needs ``"train"`` and ``"val"``; every name in
    ``eval_splits`` that it holds is evaluated at the end with the best epoch's weights.
    ``labels`` names the two classes in class-id order (default ``("ham", "spam")``; another
    binary task passes its own, e.g. ``("twain", "dickens")``); the second is the positive class
    of precision, recall and F1.

    The model is left on ``device``, in eval mode, with the best epoch's weights. Returns a dict:

    * ``history``: per epoch ``epoch``, ``train_loss`` and ``train_accuracy`` (running means over
      the epoch's batches, dropout on), ``val_loss``, ``val_accuracy`` (eval mode), ``lr`` (at the
      epoch's end) and ``seconds`` (cumulative training time).
    * ``best_epoch`` (1-based; best validation accuracy, ties broken by lower validation loss).
    * ``metrics``: ``{split: metrics}`` for ``"val"`` and each evaluated split, from
      :func:`evaluate` (accuracy, precision, recall, f1, confusion, loss, spam_probability, predicted).
    * ``trainable_params``, ``total_params``.
    * ``wall_seconds`` (the whole call: tokenizing, training, final evaluations), ``train_seconds``
      (the epochs, validation included), ``seconds_per_epoch`` and ``seconds_per_step`` (mean time of
      one optimizer step: forward, backward, clipping and update, validation excluded).
    * ``peak_memory_bytes`` and ``peak_memory_method`` (see :class:`PeakMemory`; measured around the epochs).
    * ``optimizer_state_bytes`` (:func:`optimizer_state_bytes`), ``gradient_bytes`` (of the
      trainable parameters), ``activation_bytes`` (largest :class:`SavedActivations` of a training batch).
    * ``truncated_messages``: ``{split: count}`` of messages cut to the context.
    * ``hyperparameters``, ``device``, ``precision``, ``seed``.
    """
    t_start = time.perf_counter()
    if "train" not in splits or "val" not in splits:
        raise ValueError("splits must hold 'train' and 'val'")
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be positive")
    if len(labels) != 2 or model.num_classes != 2:
        raise ValueError(f"finetune() trains binary classifiers: got labels {list(labels)} and a {model.num_classes}-class model")
    device = pick_device(device)
    precision = resolve_precision(precision, device)
    tokenizer = _tokenizer_for(model, tokenizer)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameter: call set_trainable() (or unfreeze some) first")
    model.to(device)
    ctx, pad = model.config.context_length, tokenizer.eot_token
    names = ["train", "val"] + [s for s in eval_splits if s in splits and s not in ("train", "val")]
    data, truncated = {}, {}
    for name in names:
        ids, truncated[name] = encode_messages(splits[name]["text"].tolist(), tokenizer, ctx)
        data[name] = (ids, label_ids(splits[name]["label"], labels))
    train_ids, train_y = data["train"]
    lengths = [len(s) for s in train_ids]

    optimizer = make_optimizer(model, lr, weight_decay)
    n_batches = math.ceil(len(train_ids) / batch_size)
    total_steps, warmup = epochs * n_batches, int(warmup_fraction * epochs * n_batches)

    def lr_at(step):
        if step < warmup:
            return lr * (step + 1) / warmup
        return lr * max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    torch.manual_seed(seed)  # dropout masks
    gen = torch.Generator().manual_seed(seed)  # batch order
    meter = SavedActivations(model)
    history = {k: [] for k in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")}
    best = None  # (val_accuracy, -val_loss, epoch, weights)
    step, step_seconds = 0, 0.0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, desc="fine-tuning", unit="batch")
    t0 = time.perf_counter()
    with PeakMemory(device) as mem:
        for epoch in range(1, epochs + 1):
            model.train()
            loss_sum, correct, seen = 0.0, 0, 0
            for b in _train_batches(lengths, batch_size, gen, bucket):
                t_step = time.perf_counter()
                for g in optimizer.param_groups:
                    g["lr"] = lr_at(step)
                x, lens = pad_batch([train_ids[i] for i in b], pad)
                y = torch.from_numpy(train_y[b]).to(device)
                with meter.track(), autocast(device, precision):
                    logits = model(x.to(device), lens.to(device))
                loss = F.cross_entropy(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, grad_clip)
                optimizer.step()
                step_seconds += time.perf_counter() - t_step
                step += 1
                loss_sum += loss.item() * len(b)
                correct += int((logits.argmax(-1) == y).sum())
                seen += len(b)
                if bar:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
            val = _metrics_from_probs(data["val"][1], _predict_ids(model, data["val"][0], pad, device=device), labels)
            history["epoch"].append(epoch)
            history["train_loss"].append(loss_sum / seen)
            history["train_accuracy"].append(correct / seen)
            history["val_loss"].append(val["loss"])
            history["val_accuracy"].append(val["accuracy"])
            history["lr"].append(lr_at(step - 1))
            history["seconds"].append(time.perf_counter() - t0)
            if bar:
                bar.set_postfix(epoch=epoch, loss=f"{loss_sum / seen:.3f}", val_acc=f"{val['accuracy']:.3f}")
            key = (val["accuracy"], -val["loss"])
            if best is None or key > best[0]:
                best = (key, epoch, _trainable_state(model))
    train_seconds = time.perf_counter() - t0
    if bar:
        bar.close()
    with torch.no_grad():
        named = dict(model.named_parameters())
        for n, w in best[2].items():
            named[n].copy_(w)
    model.eval()
    metrics = {
        name: _metrics_from_probs(data[name][1], _predict_ids(model, data[name][0], pad, device=device), labels)
        for name in names
        if name != "train"
    }
    return {
        "history": history,
        "best_epoch": best[1],
        "metrics": metrics,
        "trainable_params": count_parameters(model, trainable_only=True),
        "total_params": count_parameters(model),
        "wall_seconds": time.perf_counter() - t_start,
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / epochs,
        "seconds_per_step": step_seconds / max(1, step),
        "peak_memory_bytes": mem.peak_bytes,
        "peak_memory_method": mem.method,
        "optimizer_state_bytes": optimizer_state_bytes(optimizer),
        "gradient_bytes": int(sum(p.numel() * p.element_size() for p in params)),
        "activation_bytes": int(meter.peak_bytes),
        "truncated_messages": truncated,
        "hyperparameters": dict(
            epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, warmup_fraction=warmup_fraction,
            grad_clip=grad_clip, bucket=bucket, optimizer="AdamW", schedule="linear warmup, linear decay to 0",
        ),
        "device": str(device),
        "precision": precision,
        "seed": seed,
        "labels": list(labels),
    }


# ---------------------------------------------------------------------------------------------
# Baseline: bag-of-words logistic regression

WORD_PATTERN = r"[\p{L}\p{N}]+|[^\s\p{L}\p{N}]"  # runs of letters/digits, and single symbols (£, !, ...)


def words(text: str) -> list[str]:
    """The baseline's tokens: lowercased runs of letters/digits, and single other symbols."""
    return regex.findall(WORD_PATTERN, text.lower())


class BagOfWords(nn.Module):
    """Logistic regression on bag-of-words features: ``logits = W · x + b``, ``x[w] = log(1 + count of w)``.

    The vocabulary is the words of the training messages seen at least ``min_count`` times;
    other words are ignored. ``head`` is the ``nn.Linear(len(vocabulary), 2)``.
    """

    def __init__(self, vocabulary: list[str], num_classes: int = 2):
        super().__init__()
        self.vocabulary = list(vocabulary)
        self.index = {w: i for i, w in enumerate(self.vocabulary)}
        self.num_classes = num_classes
        self.head = nn.Linear(len(self.vocabulary), num_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_texts(cls, texts, min_count: int = 1) -> "BagOfWords":
        from collections import Counter

        counts = Counter(w for t in texts for w in set(words(t)))
        return cls(sorted(w for w, c in counts.items() if c >= min_count))

    def features(self, texts) -> torch.Tensor:
        x = torch.zeros(len(texts), len(self.vocabulary))
        for i, t in enumerate(texts):
            for w in words(_as_text(t)):
                j = self.index.get(w)
                if j is not None:
                    x[i, j] += 1
        return torch.log1p(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    @torch.no_grad()
    def predict_proba(self, texts) -> np.ndarray:
        return torch.softmax(self(self.features(list(texts))), dim=-1).double().numpy()


def train_baseline(
    splits: dict,
    *,
    epochs: int = 30,
    lr: float = 0.01,
    l2: float = 1e-4,
    batch_size: int = 32,
    min_count: int = 1,
    seed: int = 0,
    eval_splits=("test", "test_natural"),
    progress: bool = True,
    labels=LABELS,
) -> dict:
    """Fit :class:`BagOfWords` on ``splits["train"]``: cross-entropy + ``l2 * ||W||²`` (the bias is
    not penalised), AdamW without decoupled weight decay, shuffled mini-batches; ``seed`` fixes the
    initial weights (normal, std 0.01) and the batch order. Keeps the best epoch by validation
    accuracy (ties: lower validation loss). Returns the same keys as :func:`finetune` (plus
    ``model``, the fitted :class:`BagOfWords`)."""
    t_start = time.perf_counter()
    model = BagOfWords.from_texts(splits["train"]["text"].tolist(), min_count)
    torch.manual_seed(seed)
    nn.init.normal_(model.head.weight, std=0.01)
    gen = torch.Generator().manual_seed(seed)
    names = ["train", "val"] + [s for s in eval_splits if s in splits and s not in ("train", "val")]
    X = {n: model.features(splits[n]["text"].tolist()) for n in names}
    Y = {n: torch.from_numpy(label_ids(splits[n]["label"])) for n in names}
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    history = {k: [] for k in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")}
    best = None
    it = range(1, epochs + 1)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="bag-of-words", unit="epoch")
    n = len(Y["train"])
    t0 = time.perf_counter()
    with PeakMemory("cpu") as mem:
        for epoch in it:
            model.train()
            loss_sum, correct = 0.0, 0
            for b in torch.randperm(n, generator=gen).split(batch_size):
                logits = model(X["train"][b])
                loss = F.cross_entropy(logits, Y["train"][b])
                optimizer.zero_grad(set_to_none=True)
                (loss + l2 * model.head.weight.pow(2).sum()).backward()
                optimizer.step()
                loss_sum += loss.item() * len(b)
                correct += int((logits.argmax(-1) == Y["train"][b]).sum())
            with torch.no_grad():
                val_logits = model(X["val"])
                val_loss = F.cross_entropy(val_logits, Y["val"]).item()
                val_acc = float((val_logits.argmax(-1) == Y["val"]).float().mean())
            history["epoch"].append(epoch)
            history["train_loss"].append(loss_sum / n)
            history["train_accuracy"].append(correct / n)
            history["val_loss"].append(val_loss)
            history["val_accuracy"].append(val_acc)
            history["lr"].append(lr)
            history["seconds"].append(time.perf_counter() - t0)
            if best is None or (val_acc, -val_loss) > best[0]:
                best = ((val_acc, -val_loss), epoch, copy.deepcopy(model.state_dict()))
    train_seconds = time.perf_counter() - t0
    model.load_state_dict(best[2])
    model.eval()
    with torch.no_grad():
        metrics = {
            n: _metrics_from_probs(Y[n].numpy(), torch.softmax(model(X[n]), -1).double().numpy())
            for n in names
            if n != "train"
        }
    n_params = count_parameters(model)
    return {
        "history": history,
        "best_epoch": best[1],
        "metrics": metrics,
        "trainable_params": n_params,
        "total_params": n_params,
        "wall_seconds": time.perf_counter() - t_start,
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / epochs,
        "peak_memory_bytes": mem.peak_bytes,
        "peak_memory_method": mem.method,
        "optimizer_state_bytes": optimizer_state_bytes(optimizer),
        "gradient_bytes": n_params * 4,
        "activation_bytes": int(X["train"].nbytes),
        "truncated_messages": {n: 0 for n in names},
        "hyperparameters": dict(
            epochs=epochs, lr=lr, l2=l2, batch_size=batch_size, min_count=min_count, vocabulary=len(model.vocabulary),
            optimizer="AdamW (no decoupled decay) + L2 penalty", features="log(1 + word count)",
        ),
        "device": "cpu",
        "precision": "fp32",
        "seed": seed,
        "model": model,
    }


# ---------------------------------------------------------------------------------------------
# Plots (used by notebook 05)


def plot_confusion_matrix(confusion, ax=None, title: str = "", labels=LABELS):
    """Draw a 2×2 confusion matrix (rows: true class, columns: predicted) with counts in the cells."""
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion)
    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3))
    ax.imshow(cm, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), [f"pred {l}" for l in labels])
    ax.set_yticks(range(len(labels)), [f"true {l}" for l in labels])
    if title:
        ax.set_title(title)
    return ax


def plot_history(history: dict, axes=None, label: str = ""):
    """Loss and accuracy per epoch, train and validation (two side-by-side axes)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    ep = history["epoch"]
    prefix = f"{label} " if label else ""
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(ep, history[f"train_{key}"], "o-", label=f"{prefix}train")
        ax.plot(ep, history[f"val_{key}"], "s--", label=f"{prefix}val")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    return axes


# ---------------------------------------------------------------------------------------------
# Command line: python -m gpt finetune

# Chosen on the validation split (2 seeds per setting) with the reference checkpoint; the sweep is
# described in results/finetune/README.md. Training runs in bf16 autocast where the CPU supports it.
DEFAULT_HPARAMS = {
    "full": dict(epochs=5, lr=5e-4, batch_size=16, weight_decay=0.0, dropout=0.0, classifier_dropout=0.1),
    "last-block": dict(epochs=5, lr=1e-3, batch_size=16, weight_decay=0.0, dropout=0.0, classifier_dropout=0.1),
    "head": dict(epochs=10, lr=3e-2, batch_size=16, weight_decay=0.0, dropout=0.0, classifier_dropout=0.1),
    "lora": dict(epochs=5, lr=3e-3, batch_size=16, weight_decay=0.0, dropout=0.0, classifier_dropout=0.1, rank=8, alpha=16.0),
    "baseline": dict(epochs=30, lr=0.01, l2=1e-3, batch_size=32),
}
LORA_RANKS = (1, 2, 4, 8, 16, 32)  # the ranks `python -m gpt experiment` compares

RESULT_COLUMNS = [
    "strategy", "seed", "test_accuracy", "test_precision", "test_recall", "test_f1",
    "natural_accuracy", "natural_precision", "natural_recall", "natural_f1", "val_accuracy", "best_epoch",
    "trainable_params", "total_params", "wall_seconds", "train_seconds", "seconds_per_epoch", "seconds_per_step",
    "peak_memory_bytes", "peak_memory_method", "optimizer_state_bytes", "gradient_bytes", "activation_bytes", "stored_bytes",
    "epochs", "lr", "batch_size", "weight_decay", "l2", "dropout", "classifier_dropout", "rank", "alpha",
    "checkpoint", "checkpoint_sha256", "device", "precision", "threads", "machine", "torch", "date", "command",
]


def result_row(result: dict, strategy: str, extra: dict | None = None) -> dict:
    """One flat row (the :data:`RESULT_COLUMNS`) from a :func:`finetune` / :func:`train_baseline` result."""
    m = result["metrics"]
    hp = result["hyperparameters"]
    row = {
        "strategy": strategy,
        "seed": result["seed"],
        "val_accuracy": m["val"]["accuracy"],
        "best_epoch": result["best_epoch"],
        "trainable_params": result["trainable_params"],
        "total_params": result["total_params"],
        "wall_seconds": round(result["wall_seconds"], 2),
        "train_seconds": round(result["train_seconds"], 2),
        "seconds_per_epoch": round(result["seconds_per_epoch"], 3),
        "seconds_per_step": round(result["seconds_per_step"], 5) if "seconds_per_step" in result else None,
        "peak_memory_bytes": result["peak_memory_bytes"],
        "peak_memory_method": result["peak_memory_method"],
        "optimizer_state_bytes": result["optimizer_state_bytes"],
        "gradient_bytes": result.get("gradient_bytes"),
        "activation_bytes": result["activation_bytes"],
        "epochs": hp.get("epochs"),
        "lr": hp.get("lr"),
        "batch_size": hp.get("batch_size"),
        "weight_decay": hp.get("weight_decay"),
        "l2": hp.get("l2"),
        "device": result["device"],
        "precision": result["precision"],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for split, prefix in (("test", "test"), ("test_natural", "natural")):
        if split in m:
            for k in ("accuracy", "precision", "recall", "f1"):
                row[f"{prefix}_{k}"] = m[split][k]
    row.update(extra or {})
    return {c: row.get(c) for c in RESULT_COLUMNS}


def write_result(out_dir: str | os.PathLike, row: dict, result: dict | None = None) -> Path:
    """Add ``row`` to ``<out_dir>/results.csv`` (replacing an earlier row of the same strategy and seed),
    write the full ``result`` (history and metrics, without the model) as
    ``<out_dir>/runs/<strategy>_seed<seed>.json``, and refresh ``<out_dir>/summary.md``."""
    import pandas as pd

    out = Path(out_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    if result is not None:
        doc = {k: v for k, v in result.items() if k != "model"}
        doc["row"] = row
        (out / "runs" / f"{row['strategy']}_seed{row['seed']}.json").write_text(json.dumps(doc, indent=1) + "\n")
    csv_path = out / "results.csv"
    table = pd.read_csv(csv_path) if csv_path.exists() else pd.DataFrame(columns=RESULT_COLUMNS)
    table = table[~((table["strategy"] == row["strategy"]) & (table["seed"] == row["seed"]))]
    table = pd.concat([table, pd.DataFrame([row])], ignore_index=True) if len(table) else pd.DataFrame([row])
    table = table.sort_values(["strategy", "seed"], key=lambda c: c.map(strategy_order) if c.name == "strategy" else c)
    table.to_csv(csv_path, index=False, lineterminator="\n")
    (out / "summary.md").write_text(summary_markdown(table))
    return csv_path


def strategy_order(name: str) -> int:
    """Sort key of a results row's strategy: full, last-block, head, lora-r1, lora-r2, ..., baseline."""
    order = {s: i for i, s in enumerate(STRATEGIES)}
    if name in order:
        return order[name]
    if isinstance(name, str) and name.startswith("lora-r") and name[6:].isdigit():
        return 10 + int(name[6:])
    return 10_000 if name == "baseline" else 5_000


def lora_label(rank: int) -> str:
    """The strategy name of a LoRA run in result tables: ``"lora-r8"``."""
    return f"lora-r{int(rank)}"


def task_storage_bytes(model: nn.Module, base_checkpoint=None) -> int:
    """Bytes that must be stored per task to rebuild ``model`` from the shared base checkpoint.

    For a LoRA model: the adapter folder written by :func:`gpt.lora.save_adapter` (factors, the
    trainable head and the JSON config). Otherwise: a safetensors file of the trainable parameters
    (for full fine-tuning that is the whole model). Measured by writing the files to a temporary folder.
    """
    import tempfile

    from safetensors.torch import save_file

    from .lora import lora_layers, save_adapter

    with tempfile.TemporaryDirectory() as tmp:
        if any(True for _ in lora_layers(model)):
            folder = save_adapter(model, Path(tmp) / "adapter", base_checkpoint=base_checkpoint)
            return sum(f.stat().st_size for f in folder.iterdir())
        tensors = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
        save_file(tensors, str(Path(tmp) / "task.safetensors"))
        return (Path(tmp) / "task.safetensors").stat().st_size


def refresh_summary(out_dir: str | os.PathLike) -> Path:
    """Rewrite ``<out_dir>/summary.md`` from ``<out_dir>/results.csv``."""
    import pandas as pd

    out = Path(out_dir)
    (out / "summary.md").write_text(summary_markdown(pd.read_csv(out / "results.csv")))
    return out / "summary.md"


def summarize(table):
    """Mean and standard deviation (over seeds, ddof=1) per strategy of the main numbers of a results table."""
    import pandas as pd

    rows = []
    for strategy, g in table.groupby("strategy", sort=False):
        r = {"strategy": strategy, "seeds": " ".join(str(s) for s in sorted(g["seed"])), "n": len(g),
             "trainable_params": int(g["trainable_params"].iloc[0]), "total_params": int(g["total_params"].iloc[0])}
        for c in ("test_accuracy", "test_precision", "test_recall", "test_f1", "natural_accuracy", "natural_precision",
                  "natural_recall", "natural_f1", "wall_seconds", "seconds_per_epoch", "seconds_per_step", "peak_memory_bytes",
                  "optimizer_state_bytes", "activation_bytes", "stored_bytes"):
            v = pd.to_numeric(g[c], errors="coerce") if c in g else pd.Series([float("nan")] * len(g))
            r[f"{c}_mean"], r[f"{c}_std"] = float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
            r[f"{c}_min"], r[f"{c}_max"] = float(v.min()), float(v.max())
        rows.append(r)
    return pd.DataFrame(rows)


def _fmt_bytes(n: float) -> str:
    if n != n:  # NaN: not recorded
        return "–"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.{1 if n < 10 * size else 0}f} {unit}"
    return f"{n:.0f} B"


def summary_markdown(table) -> str:
    """The markdown table of ``summary.md``: one line per strategy, mean ± std over seeds."""
    s = summarize(table)
    lines = [
        "# Spam classification: fine-tuning results",
        "",
        "Mean ± standard deviation over seeds (min–max in brackets). Balanced test: 300 messages (150 spam);",
        "natural test: 1,119 messages (150 spam, 13.4 %). Time per run: the whole run (tokenizing, training,",
        "evaluation); time per step: one optimizer step (forward, backward, update) on a batch of 16.",
        "Peak memory: growth of the process's resident memory during training, sampled every 5 ms (allocator",
        "caches included, so it is rough); optimizer state is an exact byte count. Stored per task: the bytes",
        "that must be kept to rebuild the fine-tuned model from the shared base checkpoint (all weights for",
        "full fine-tuning; the trainable tensors for last-block and head; the adapter folder for LoRA).",
        "See README.md for the columns of results.csv.",
        "",
        "| strategy | seeds | trainable / total params | balanced test accuracy | balanced test F1 | natural test accuracy | natural test F1 "
        "| time per run (s) | ms / step | peak memory | optimizer state | stored per task |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in s.iterrows():
        def pm(c, scale=100.0, digits=1):
            return f"{r[c + '_mean'] * scale:.{digits}f} ± {r[c + '_std'] * scale:.{digits}f} ({r[c + '_min'] * scale:.{digits}f}–{r[c + '_max'] * scale:.{digits}f})"

        step = r["seconds_per_step_mean"]
        lines.append(
            f"| {r['strategy']} | {r['seeds']} | {r['trainable_params']:,} / {r['total_params']:,} "
            f"({100 * r['trainable_params'] / r['total_params']:.2f} %) | {pm('test_accuracy')} % | {pm('test_f1')} % "
            f"| {pm('natural_accuracy')} % | {pm('natural_f1')} % | {r['wall_seconds_mean']:.1f} ± {r['wall_seconds_std']:.1f} "
            f"| {'–' if step != step else f'{1000 * step:.1f}'} | {_fmt_bytes(r['peak_memory_bytes_mean'])} "
            f"| {_fmt_bytes(r['optimizer_state_bytes_mean'])} | {_fmt_bytes(r['stored_bytes_mean'])} |"
        )
    cmds = sorted(set(table["command"].dropna()))
    if cmds:
        lines += ["", "Produced by:", ""] + [f"    {c}" for c in cmds]
    return "\n".join(lines) + "\n"


_HPARAM_FLAGS = ("epochs", "lr", "batch_size", "weight_decay", "l2", "dropout", "classifier_dropout", "rank", "alpha")


def _run_one(args, seed: int, command: str) -> dict:
    from .reference import machine_description, reference_path

    hp = {**DEFAULT_HPARAMS[args.strategy]}
    for k in _HPARAM_FLAGS:
        v = getattr(args, k, None)
        if v is not None:
            if k not in hp:
                raise SystemExit(f"--{k.replace('_', '-')} does not apply to the strategy {args.strategy!r}")
            hp[k] = v
    label = lora_label(hp["rank"]) if args.strategy == "lora" else args.strategy  # the results row's strategy
    splits = load_splits()
    extra = {"command": command, "machine": machine_description()}
    if args.strategy == "baseline":
        result = train_baseline(splits, **hp, seed=seed)
        extra.update(checkpoint="", checkpoint_sha256="")
    else:
        ckpt = Path(args.checkpoint) if args.checkpoint else reference_path()
        model = classifier_from_checkpoint(ckpt, dropout=hp["dropout"], classifier_dropout=hp["classifier_dropout"], seed=seed)
        if args.strategy == "lora":
            from .lora import apply_lora

            with torch.random.fork_rng(devices=[]):  # the LoRA init depends on the seed, not on what ran before
                torch.manual_seed(seed)
                apply_lora(model, rank=hp["rank"], alpha=hp["alpha"], train_head=True)
            extra.update(rank=hp["rank"], alpha=hp["alpha"])
        else:
            set_trainable(model, args.strategy)
        counts = {"trainable": count_parameters(model, trainable_only=True), "total": count_parameters(model)}
        print(f"{label}: {counts['trainable']:,} of {counts['total']:,} parameters train (seed {seed})")
        result = finetune(
            model, splits, epochs=hp["epochs"], lr=hp["lr"], batch_size=hp["batch_size"], weight_decay=hp["weight_decay"],
            seed=seed, device=args.device, precision=args.precision,
        )
        try:
            shown = ckpt.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            shown = ckpt
        extra.update(checkpoint=str(shown), checkpoint_sha256=sha256_file(ckpt), stored_bytes=task_storage_bytes(model, ckpt),
                     dropout=hp["dropout"], classifier_dropout=hp["classifier_dropout"])
    row = result_row(result, label, extra)
    write_result(args.out, row, result)
    print(
        f"{label} seed {seed}: best epoch {row['best_epoch']}, balanced test accuracy {row['test_accuracy']:.4f}, "
        f"F1 {row['test_f1']:.4f}; natural test accuracy {row['natural_accuracy']:.4f}, F1 {row['natural_f1']:.4f}; "
        f"{row['wall_seconds']:.1f} s"
    )
    return row


def _cmd_finetune(args) -> int:
    entry = "python -m gpt.classify" if Path(sys.argv[0]).name == "classify.py" else "python -m gpt"
    command = args.command_line or entry + " " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.in_process or len(args.seeds) == 1 and args.in_process is None:
        for seed in args.seeds:
            _run_one(args, seed, command)
        return 0
    # One fresh process per seed, so that wall time and peak memory are not affected by the runs before.
    for seed in args.seeds:
        child = [a for a in _forwarded_args(args)] + ["--seeds", str(seed), "--in-process", "--command-line", command]
        code = "import sys; from gpt.classify import main; sys.exit(main(sys.argv[1:]))"
        rc = subprocess.call([sys.executable, "-c", code, "finetune", *child])
        if rc:
            return rc
    return 0


def _forwarded_args(args) -> list[str]:
    out = ["--strategy", args.strategy, "--out", str(args.out), "--device", args.device, "--precision", args.precision]
    if args.checkpoint:
        out += ["--checkpoint", args.checkpoint]
    for k in _HPARAM_FLAGS:
        v = getattr(args, k)
        if v is not None:
            out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def register_cli(subparsers) -> None:
    """Add the ``finetune`` command to the ``python -m gpt`` argument parser's subparsers."""
    f = subparsers.add_parser(
        "finetune",
        help="fine-tune the reference GPT for SMS spam (or fit the bag-of-words baseline) and write result rows",
        description="Fine-tune a pretrained GPT checkpoint on the balanced SMS spam split with one strategy and "
        "several seeds; each run writes <out>/runs/<strategy>_seed<seed>.json, a row of <out>/results.csv "
        "and refreshes <out>/summary.md. Each seed runs in a fresh process (clean timing and memory).",
    )
    f.add_argument("--strategy", required=True, choices=list(STRATEGIES) + ["lora", "baseline"])
    f.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    f.add_argument("--checkpoint", default="", help="pretrained GPT safetensors (default: the reference model)")
    f.add_argument("--epochs", type=int, default=None, help="default: per strategy, see gpt.classify.DEFAULT_HPARAMS")
    f.add_argument("--lr", type=float, default=None)
    f.add_argument("--batch-size", type=int, default=None)
    f.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay (GPT strategies)")
    f.add_argument("--l2", type=float, default=None, help="L2 penalty (baseline)")
    f.add_argument("--dropout", type=float, default=None, help="dropout inside the transformer")
    f.add_argument("--classifier-dropout", type=float, default=None, help="dropout before the head")
    f.add_argument("--rank", type=int, default=None, help="LoRA rank r (strategy lora)")
    f.add_argument("--alpha", type=float, default=None, help="LoRA alpha; scale = alpha / r (strategy lora)")
    f.add_argument("--device", default="cpu")
    f.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"], help="of the training steps (evaluation: fp32)")
    f.add_argument("--out", default="results/finetune")
    f.add_argument("--in-process", action="store_true", default=None, help=argparse.SUPPRESS)
    f.add_argument("--command-line", default="", help=argparse.SUPPRESS)
    f.set_defaults(func=_cmd_finetune)


def main(argv=None) -> int:
    """``python -m gpt.classify finetune ...`` (the same as ``python -m gpt finetune ...``)."""
    p = argparse.ArgumentParser(prog="python -m gpt")
    sub = p.add_subparsers(dest="command", required=True)
    register_cli(sub)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
