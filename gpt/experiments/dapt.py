"""Domain-adaptive pretraining (DAPT): continue pretraining a checkpoint on the unlabelled text of the
SMS *training* messages, before fine-tuning it to classify them.

The course model learned English from 19th-century novels; SMS spam is modern, abbreviated and full
of numbers ("txt", "ur", "£1000"). DAPT shows the model that kind of text with the same next-token
objective, without using any label. Only the messages of the pinned ``train`` split are used: the
validation and test messages are never seen, so the fine-tuning results stay honest.

* :func:`message_stream` -- messages → one token stream (each message followed by ``<|endoftext|>``).
* :func:`dapt` -- split the training messages into a part to train on and a held-out part (for the
  language-model loss only), then :func:`gpt.train.pretrain` from the checkpoint's weights.
* ``python -m gpt dapt`` -- the command: reference checkpoint in, ``<out>/model.safetensors`` and
  ``<out>/dapt_card.json`` (what was done, the data's sha256, losses before and after) out. Fine-tune
  it with ``python -m gpt finetune --checkpoint <out>/model.safetensors``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["message_stream", "split_messages", "dapt", "DEFAULT_OUT", "register_cli"]

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
    from ..runtime.device import pick_device
    from ..train import evaluate, pretrain

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


def _cmd_dapt(args) -> int:
    from ..data import sha256_file
    from ..io.files import atomic_dir, check_output, display_path
    from ..teaching.reference import machine_description, reference_path
    from ..sms import load_splits, splits_dir
    from ..tokenizer import course_tokenizer, tokenizer_fingerprint
    from ..train import TrainConfig, load_model, read_checkpoint, save_model

    checkpoint = Path(args.checkpoint) if args.checkpoint else reference_path()
    config, _, meta = read_checkpoint(checkpoint)
    tok = course_tokenizer()
    if config.vocab_size != tok.n_vocab or meta.get("tokenizer_fingerprint", tokenizer_fingerprint(tok)) != tokenizer_fingerprint(tok):
        raise ConfigError(f"{checkpoint} was not trained with the course tokenizer; DAPT needs a course checkpoint")
    cfg = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, lr=args.lr, min_lr=args.lr / 10,
                      warmup_steps=min(args.warmup, args.steps), eval_interval=max(1, args.steps // 5), eval_batches=args.eval_batches,
                      weight_decay=args.weight_decay, device=args.device, seed=args.seed)
    out = check_output(args.out, kind="dir", overwrite=args.overwrite)
    splits = load_splits()
    texts = splits["train"]["text"].tolist()
    torch.manual_seed(args.seed)
    model = load_model(checkpoint)
    t0 = time.perf_counter()
    hist = dapt(model, texts, tok, cfg, args.heldout_fraction)
    card = {
        "what": "domain-adaptive pretraining: the checkpoint's weights, further pretrained (next-token loss) on the text "
                "of the SMS train split's messages only; no labels, no validation or test message",
        "base_checkpoint": display_path(checkpoint), "base_checkpoint_sha256": sha256_file(checkpoint),
        "train_split_sha256": sha256_file(splits_dir() / "train.csv"),
        "train_messages": hist["train_messages"], "heldout_messages": hist["heldout_messages"],
        "train_tokens": hist["train_tokens"], "heldout_tokens": hist["heldout_tokens"],
        "steps": cfg.max_steps, "batch_size": cfg.batch_size, "tokens_seen": cfg.max_steps * cfg.batch_size * config.context_length,
        "passes_over_the_messages": round(cfg.max_steps * cfg.batch_size * config.context_length / hist["train_tokens"], 1),
        "heldout_loss_before": hist["heldout_loss_before"], "heldout_loss_after": hist["heldout_loss_after"],
        "train_config": {k: v for k, v in vars(cfg).items() if k != "betas"},
        "command": "python -m gpt " + " ".join(args._argv), "machine": machine_description(),
        "wall_seconds": round(time.perf_counter() - t0, 1), "precision": hist["precision"],
    }
    with atomic_dir(out, overwrite=args.overwrite) as tmp:
        save_model(model, tmp / "model.safetensors", metadata={"tokenizer_fingerprint": tokenizer_fingerprint(tok)})
        (tmp / "dapt_card.json").write_text(json.dumps(card, indent=1) + "\n")
    print(f"held-out SMS language-model loss: {card['heldout_loss_before']:.3f} -> {card['heldout_loss_after']:.3f} "
          f"({card['passes_over_the_messages']} passes over {card['train_messages']} messages); wrote {out}/model.safetensors")
    return 0


def register_cli(subparsers) -> None:
    """Add the ``dapt`` command to ``python -m gpt``."""
    d = subparsers.add_parser(
        "dapt",
        help="domain-adaptive pretraining: continue pretraining a checkpoint on the SMS training messages' text (no labels)",
        description=__doc__.split("\n\n")[1],
    )
    d.add_argument("--checkpoint", default="", help="the GPT to start from (default: the reference model)")
    from ..cli.pretrain import _int_at_least, _nonnegative_float, _positive_float

    d.add_argument("--steps", type=_int_at_least(1), default=200)
    d.add_argument("--batch-size", type=_int_at_least(1), default=16)
    d.add_argument("--lr", type=_positive_float, default=3e-4)
    d.add_argument("--warmup", type=_int_at_least(0), default=20)
    d.add_argument("--weight-decay", type=_nonnegative_float, default=0.1)
    d.add_argument("--eval-batches", type=_int_at_least(1), default=10)
    d.add_argument("--heldout-fraction", type=float, default=HELDOUT_FRACTION, help="share of the training messages held out for the LM loss")
    d.add_argument("--device", default="auto")
    d.add_argument("--seed", type=int, default=1234)
    d.add_argument("--out", default=DEFAULT_OUT)
    d.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    d.set_defaults(func=_cmd_dapt)

