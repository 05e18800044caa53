"""The GPT as a classifier: encode messages, pad them, read the last real token, predict.

* :func:`encode_messages` and :func:`pad_batch` turn texts into right-padded token ids plus lengths.
* :class:`GPTClassifier` *holds* a pretrained :class:`~gpt.model.GPT` body and adds a
  classification ``head`` = ``nn.Linear(n_embd, num_classes)`` that reads the hidden state of the
  *last real token* of every message (never a padding token).
* :func:`classifier_from_checkpoint` builds one from a checkpoint (default: the reference model),
  checking that the checkpoint's vocabulary is the tokenizer's (:func:`gpt.io.weights.check_checkpoint_tokenizer`);
  :func:`classifier_from_pretrained` from GPT-2's weights (:mod:`gpt.io.hf`), with GPT-2's tokenizer.
* :func:`set_trainable` chooses what trains: ``"full"``, ``"last-block"`` or ``"head"`` (LoRA is
  :func:`gpt.lora.apply_lora`).
* Inference: :func:`predict_proba` (many messages), :func:`evaluate_classifier` (a labelled split, with
  :mod:`gpt.metrics`) and :func:`classify` (one message).

Messages are tokenized with the model's tokenizer (the course's; GPT-2's for GPT-2 weights), padded on
the right with ``<|endoftext|>``, and truncated to the model's context (the first ``context_length`` tokens are kept).
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn

from .checks import check_number, check_whole_number
from .errors import ConfigError
from .io.tokenizer_files import check_vocabulary
from .io.weights import check_checkpoint_tokenizer, load_model, reference_path
from .metrics import metrics_from_probs
from .model import GPT, GPTConfig, count_parameters
from .runtime.device import autocast
from .sms import LABELS, label_ids
from .tokenizer import tokenizer_of


STRATEGIES = ("full", "last-block", "head")

# ---------------------------------------------------------------------------------------------
# Messages -> token ids -> padded batches


def as_text(message) -> str:
    """A message as str: bytes must be UTF-8; empty or whitespace-only messages are rejected."""
    if isinstance(message, (bytes, bytearray)):
        try:
            message = bytes(message).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"message is not valid UTF-8: {e.reason} at byte {e.start}") from e
    if not isinstance(message, str):
        raise TypeError(f"a message must be str or UTF-8 bytes, got {type(message).__name__}")
    try:
        message.encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates, e.g. from decoding with errors="surrogateescape"
        raise ConfigError(f"message is not valid Unicode text: {e.reason} at position {e.start}") from e
    if not message.strip():
        raise ConfigError("empty message: there is nothing to classify")
    return message


def _message_list(texts) -> list:
    """``texts`` as a list of messages; one str (or bytes) is refused (it would be read letter by letter)."""
    if isinstance(texts, (str, bytes, bytearray)):
        raise ConfigError(
            "expected a list of messages, got a single message; wrap it in a list ([message]) or use classify(model, message)"
        )
    try:
        return list(texts)
    except TypeError as e:
        raise ConfigError(f"expected a list of messages, got {type(texts).__name__}") from e


def encode_messages(texts, tokenizer, max_length: int) -> tuple[list[list[int]], int]:
    """Token ids of every message, each cut to its first ``max_length`` tokens.

    Returns ``(ids, n_truncated)``. Every message must be non-empty text (see :func:`classify`).
    """
    check_whole_number("max_length", max_length, minimum=1)
    out, n_truncated = [], 0
    for t in _message_list(texts):
        ids = tokenizer.encode_ordinary(as_text(t))
        if len(ids) > max_length:
            ids, n_truncated = ids[:max_length], n_truncated + 1
        out.append(ids)
    return out, n_truncated


def pad_batch(seqs: list[list[int]], pad_id: int, pad_to: int | None = None,
              pad_to_multiple_of: int | None = None, max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists with ``pad_id`` into ``(ids (B, T), lengths (B,))``.

    ``T`` is the longest sequence, or ``pad_to`` if given (for the padding lesson and tests). With
    ``pad_to_multiple_of`` (Hugging Face's name), ``T`` is rounded up to a multiple of it: batches then
    come in a few repeated shapes, so a CPU reuses the matmul kernels it built for the first batch of a
    shape instead of building new ones for every new length. The padding is never read: the model is
    causal and the classifier pools the last *real* token, so the logits are the same up to rounding.
    The rounded length never exceeds ``max_length`` (the model's context), nor drops below the longest sequence.
    """
    if not seqs or any(len(s) == 0 for s in seqs):
        raise ConfigError("pad_batch needs at least one sequence, and no empty sequence")
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    longest = int(lengths.max())
    T = longest if pad_to is None else pad_to
    if T < longest:
        raise ConfigError(f"pad_to={pad_to} is shorter than the longest sequence ({longest})")
    if pad_to_multiple_of is not None:
        check_whole_number("pad_to_multiple_of", pad_to_multiple_of, minimum=1)
        T = -(-T // pad_to_multiple_of) * pad_to_multiple_of
        if max_length is not None:
            T = max(longest, min(T, max_length))
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return ids, lengths


# ---------------------------------------------------------------------------------------------
# The classifier


class GPTClassifier(nn.Module):
    """A pretrained GPT body plus a classification ``head`` on the last real token.

    ``forward(idx, lengths)`` runs the body on right-padded token ids ``idx`` (B, T) and returns
    class logits (B, num_classes) computed from the hidden state at position ``lengths - 1``: the
    last *real* token of every row. Thanks to the causal mask that hidden state never sees the
    padding after it, so the prediction does not depend on how much padding there is. Without
    ``lengths`` every row is taken to end at ``T - 1`` (no padding).

    The body is held, not inherited: ``model.gpt`` is the :class:`~gpt.model.GPT` (its blocks are
    ``model.gpt.blocks``); only its hidden states are used. Its ``lm_head`` is not: with tied
    weights (the course model, GPT-2) it is the token embedding and costs nothing; an untied
    ``lm_head`` is frozen and never trains.
    """

    def __init__(self, gpt: GPT, num_classes: int = 2, classifier_dropout: float = 0.0):
        super().__init__()
        if not isinstance(gpt, GPT):
            raise TypeError(f"GPTClassifier holds a gpt.model.GPT, got {type(gpt).__name__}")
        check_whole_number("num_classes", num_classes, minimum=2)
        check_number("classifier_dropout", classifier_dropout, low=0.0, high=1.0, high_open=True)
        self.gpt = gpt
        if not gpt.config.tie_weights:
            gpt.lm_head.requires_grad_(False)
        self.num_classes = num_classes
        self.classifier_dropout = nn.Dropout(classifier_dropout)
        self.head = nn.Linear(gpt.config.n_embd, num_classes)
        nn.init.normal_(self.head.weight, mean=0.0, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.head.to(next(gpt.parameters()).device)

    @property
    def config(self) -> GPTConfig:
        return self.gpt.config

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        """The body's final normalised hidden states (B, T, C)."""
        return self.gpt.hidden_states(idx)

    def last_token_states(self, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden state (B, C) of each row's last real token (position ``lengths - 1``)."""
        h = self.hidden_states(idx)  # (B, T, C)
        B, T, _ = h.shape
        if lengths is None:
            return h[:, -1, :]
        lengths = lengths.to(h.device)
        if lengths.shape != (B,) or int(lengths.min()) < 1 or int(lengths.max()) > T:
            raise ConfigError(f"lengths must be {B} integers in [1, {T}], got {lengths.tolist()}")
        return h[torch.arange(B, device=h.device), lengths - 1]  # (B, C)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.classifier_dropout(self.last_token_states(idx, lengths)))  # (B, num_classes)

    @classmethod
    def from_gpt(cls, gpt: GPT, num_classes: int = 2, classifier_dropout: float = 0.0, seed: int = 0) -> "GPTClassifier":
        """A classifier holding a copy of ``gpt`` (the original is never changed) and a new head initialised from ``seed``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(copy.deepcopy(gpt), num_classes, classifier_dropout)


def classifier_from_checkpoint(
    path: str | os.PathLike | None = None,
    num_classes: int = 2,
    classifier_dropout: float = 0.0,
    dropout: float | None = None,
    tokenizer=None,
    seed: int = 0,
    device="cpu",
    attn_impl: str | None = None,
) -> GPTClassifier:
    """A :class:`GPTClassifier` from a pretrained GPT checkpoint (default: the reference model).

    The vocabulary is checked against ``tokenizer`` (default: the one the checkpoint names, GPT-2's
    for a saved GPT-2, else the course tokenizer; see :func:`gpt.io.weights.check_checkpoint_tokenizer`).
    ``dropout`` overrides the transformer's dropout; the head is initialised from ``seed``. ``attn_impl``
    overrides the attention the checkpoint was saved with (it changes how, not what, the model computes).
    A missing, extra or mis-shaped tensor is a CheckpointError naming it.
    """

    path = Path(path) if path else reference_path()
    check_checkpoint_tokenizer(path, tokenizer)
    if dropout is not None:
        check_number("dropout", dropout, low=0.0, high=1.0, high_open=True)
    overrides = {k: v for k, v in (("dropout", dropout), ("attn_impl", attn_impl)) if v is not None}
    body = load_model(path, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPTClassifier(body, num_classes, classifier_dropout)
    return model.to(device)


def classifier_from_pretrained(
    base: str | os.PathLike,
    num_classes: int = 2,
    classifier_dropout: float = 0.0,
    dropout: float = 0.0,
    seed: int = 0,
    device="cpu",
    attn_impl: str | None = None,
) -> GPTClassifier:
    """A :class:`GPTClassifier` around Hugging Face GPT-2 weights (:meth:`GPT.from_pretrained <gpt.model.GPT.from_pretrained>`: ``"gpt2"``,
    ``"gpt2-medium"``, ... or a local folder). Its GPT carries ``tokenizer_name = "gpt2"``, so encoding,
    padding (with ``<|endoftext|>`` = 50256) and the vocabulary check use GPT-2's tokenizer by themselves."""
    check_number("dropout", dropout, low=0.0, high=1.0, high_open=True)
    body = GPT.from_pretrained(base, dropout=dropout, **({} if attn_impl is None else {"attn_impl": attn_impl}))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPTClassifier(body, num_classes, classifier_dropout)
    return model.to(device)


def set_trainable(model: GPTClassifier, strategy: str) -> dict:
    """Freeze / unfreeze ``model``'s parameters for a fine-tuning strategy; returns the counts.

    * ``"full"``: every parameter trains (an untied, unused ``lm_head`` excepted).
    * ``"last-block"``: the last transformer block, the final LayerNorm ``ln_f`` and ``head``.
    * ``"head"``: only ``head`` (``n_embd * num_classes + num_classes`` parameters).

    Returns ``{"trainable": int, "total": int}`` (a tied weight counts once).
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES} (LoRA: gpt.lora.apply_lora)")
    if not isinstance(model, GPTClassifier):
        raise TypeError(f"set_trainable expects a GPTClassifier, got {type(model).__name__}")
    model.requires_grad_(strategy == "full")
    if not model.config.tie_weights:
        model.gpt.lm_head.requires_grad_(False)
    if strategy == "last-block":
        for m in (model.gpt.blocks[-1], model.gpt.ln_f):
            m.requires_grad_(True)
    model.head.requires_grad_(True)
    return {"trainable": count_parameters(model, trainable_only=True), "total": count_parameters(model)}


# ---------------------------------------------------------------------------------------------
# Inference


def tokenizer_for(model: GPTClassifier, tokenizer=None):
    """``tokenizer`` (default: the model's own, :func:`gpt.tokenizer.tokenizer_of`: GPT-2's for GPT-2
    weights, else the course tokenizer), after checking it is the model's vocabulary."""

    tokenizer = tokenizer or tokenizer_of(model)
    check_vocabulary(model.config, tokenizer, source="the model")
    return tokenizer


def _length_sorted_batches(lengths, batch_size: int):
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def predict_ids(model: GPTClassifier, ids: list[list[int]], pad_id: int, batch_size: int = 64, device=None, precision: str = "fp32",
                pad_to_multiple_of: int | None = None) -> np.ndarray:
    """Class probabilities (N, num_classes) of already-encoded messages, in eval mode (the mode is restored).
    ``pad_to_multiple_of``: see :func:`pad_batch`."""
    check_whole_number("batch_size", batch_size, minimum=1)
    device = device or next(model.parameters()).device
    was = model.training
    model.eval()
    out = np.zeros((len(ids), model.num_classes), dtype=np.float64)
    for b in _length_sorted_batches([len(s) for s in ids], batch_size):  # less padding; order restored below
        x, lengths = pad_batch([ids[i] for i in b], pad_id, pad_to_multiple_of=pad_to_multiple_of,
                               max_length=model.config.context_length)
        with autocast(torch.device(device), precision):
            logits = model(x.to(device), lengths.to(device))
        out[b] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    model.train(was)
    return out


def predict_proba(model: GPTClassifier, texts, tokenizer=None, batch_size: int = 64, device=None, precision: str = "fp32") -> np.ndarray:
    """Class probabilities (N, num_classes) for a list of messages (longer ones are truncated to the context)."""
    tokenizer = tokenizer_for(model, tokenizer)
    ids, _ = encode_messages(texts, tokenizer, model.config.context_length)
    return predict_ids(model, ids, tokenizer.eot_token, batch_size, device, precision)


def evaluate_classifier(
    model: GPTClassifier, df, tokenizer=None, batch_size: int = 64, device=None, precision: str = "fp32", labels=LABELS
) -> dict:
    """Loss and :func:`gpt.metrics.classification_metrics` of ``model`` on a split (DataFrame with ``label``, ``text``).

    ``labels``: the class names in class-id order (default ham, spam; the second is the "positive"
    class of precision / recall / F1). Also returns ``spam_probability`` (the probability of
    ``labels[1]``) and ``predicted`` (label names) per message (lists, in ``df`` order).
    """
    missing = {"label", "text"} - set(getattr(df, "columns", ()))
    if missing:
        raise ConfigError(f"evaluate_classifier() needs a DataFrame with columns 'label' and 'text'; missing {sorted(missing)}")
    if len(df) == 0:
        raise ConfigError("evaluate_classifier() got an empty split: there is nothing to measure")
    y = label_ids(df["label"], labels)
    probs = predict_proba(model, df["text"].tolist(), tokenizer, batch_size, device, precision)
    return metrics_from_probs(y, probs, labels)


class Prediction(NamedTuple):
    label: str  # "ham" or "spam"
    spam_probability: float


@torch.no_grad()
def classify(model: GPTClassifier, message, tokenizer=None) -> Prediction:
    """Classify one SMS: returns ``Prediction(label, spam_probability)`` (unpacks as a tuple).

    ``message`` is a str or UTF-8 bytes. Handling of bad input:

    * empty or whitespace-only message, bytes that are not UTF-8, text with lone surrogates:
      :class:`~gpt.errors.ConfigError` (a ValueError); anything but str/bytes: ``TypeError``;
    * a message longer than the model's context (256 tokens for the reference model, roughly
      1,000 characters) is truncated to its first ``context_length`` tokens, with a ``UserWarning``;
    * a tokenizer whose vocabulary is not the model's: :class:`~gpt.io.tokenizer_files.VocabularyMismatchError`.
    """
    if model.num_classes != len(LABELS):
        raise ConfigError(f"classify() needs a ham/spam model with 2 classes, this one has {model.num_classes}")
    if not isinstance(message, (str, bytes, bytearray)):
        raise TypeError(f"a message must be str or UTF-8 bytes, got {type(message).__name__} (for many messages use predict_proba)")
    tokenizer = tokenizer_for(model, tokenizer)
    ids, n_truncated = encode_messages([message], tokenizer, model.config.context_length)
    if n_truncated:
        warnings.warn(
            f"the message is longer than the model's context; only its first {model.config.context_length} tokens were read",
            stacklevel=2,
        )
    p = predict_ids(model, ids, tokenizer.eot_token)[0]
    return Prediction(LABELS[int(p.argmax())], float(p[1]))
