"""Domain-adaptive pretraining (DAPT): continue pretraining a checkpoint on the unlabelled text of the
SMS *training* messages, before fine-tuning it to classify them.

The course model learned English from 19th-century novels; SMS spam is modern, abbreviated and full
of numbers ("txt", "ur", "£1000"). DAPT shows the model that kind of text with the same next-token
objective, without using any label. Only the messages of the pinned ``train`` split are used: the
validation and test messages are never seen, so the fine-tuning results stay honest.

* :func:`message_stream` -- messages → one token stream (each message followed by ``<|endoftext|>``).
* :func:`dapt` -- split the training messages into a part to train on and a held-out part (for the
  language-model loss only), then :func:`gpt.train.pretrain` from the checkpoint's weights.
* ``python -m gpt dapt`` (:mod:`gpt.cli.dapt`) -- the command: reference checkpoint in, ``<out>/model.safetensors`` and
  ``<out>/dapt_card.json`` (what was done, the data's sha256, losses before and after) out. Fine-tune
  it with ``python -m gpt finetune --checkpoint <out>/model.safetensors``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..runtime.device import pick_device
from ..train import evaluate, pretrain

__all__ = ["message_stream", "split_messages", "dapt", "DEFAULT_OUT"]

DEFAULT_OUT = "runs/dapt"
HELDOUT_FRACTION = 0.1


def message_stream(texts, tokenizer) -> np.ndarray:
    """The token ids of every message, each followed by the end-of-text token, in one int64 array."""
    ids: list[int] = []
    for t in texts:
        ids.extend(tokenizer.encode_ordinary(str(t)))
        ids.append(tokenizer.eot_token)
    return np.asarray(ids, dtype=np.int64)


def split_messages(texts, heldout_fraction: float = HELDOUT_FRACTION) -> tuple[list, list]:
    """(messages to train on, held-out messages): the last ``heldout_fraction`` of the list is held out
    (the pinned split's order is already shuffled)."""
    texts = list(texts)
    if not 0 < heldout_fraction < 1:
        raise ConfigError(f"heldout_fraction must be between 0 and 1, got {heldout_fraction!r}")
    n_held = max(1, int(round(heldout_fraction * len(texts))))
    if len(texts) - n_held < 1:
        raise ConfigError(f"{len(texts)} messages are too few to hold out {heldout_fraction:.0%} of them")
    return texts[:-n_held], texts[-n_held:]


def dapt(model, texts, tokenizer, cfg, heldout_fraction: float = HELDOUT_FRACTION, progress: bool = True) -> dict:
    """Continue pretraining ``model`` on ``texts`` (the training messages) with :func:`gpt.train.pretrain`;
    returns its history plus the held-out language-model loss before and after."""
    train_texts, held_texts = split_messages(texts, heldout_fraction)
    train_ids, held_ids = message_stream(train_texts, tokenizer), message_stream(held_texts, tokenizer)
    device = pick_device(cfg.device)
    held_t = torch.from_numpy(held_ids)
    before = evaluate(model.to(device), held_t, cfg.batch_size, cfg.eval_batches, device, "fp32", cfg.seed)
    history = pretrain(model, train_ids, held_ids, cfg, progress=progress)
    after = evaluate(model, held_t, cfg.batch_size, cfg.eval_batches, device, "fp32", cfg.seed)
    history.update(heldout_loss_before=before, heldout_loss_after=after, train_messages=len(train_texts),
                   heldout_messages=len(held_texts), train_tokens=int(len(train_ids)), heldout_tokens=int(len(held_ids)))
    return history
