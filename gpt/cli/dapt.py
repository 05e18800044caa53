"""``python -m gpt dapt``: domain-adaptive pretraining of a checkpoint on the SMS training messages' text
(the library: :mod:`gpt.experiments.dapt`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..io.files import sha256_file
from ..errors import ConfigError
from ..experiments.dapt import DEFAULT_OUT, HELDOUT_FRACTION, dapt
from ..experiments import dapt as library
from ..io.files import atomic_dir, check_output, display_path
from ..io.lock import output_lock
from ..io.sms_files import splits_dir
from ..runtime.device import pick_device
from ..runtime.memory import check_training_memory
from ..sms import load_splits
from ..teaching.reference import machine_description, reference_path
from ..io.tokenizer_files import tokenizer_fingerprint
from ..tokenizer import course_tokenizer
from ..io.weights import load_model, read_checkpoint, save_model
from ..train_config import TrainConfig
from .args import int_at_least, nonnegative_float, positive_float


def _cmd_dapt(args) -> int:
    checkpoint = Path(args.checkpoint) if args.checkpoint else reference_path()
    config, state, meta = read_checkpoint(checkpoint)
    tok = course_tokenizer()
    if config.vocab_size != tok.n_vocab or meta.get("tokenizer_fingerprint", tokenizer_fingerprint(tok)) != tokenizer_fingerprint(tok):
        raise ConfigError(f"{checkpoint} was not trained with the course tokenizer; DAPT needs a course checkpoint")
    cfg = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, lr=args.lr, min_lr=args.lr / 10,
                      warmup_steps=min(args.warmup, args.steps), eval_interval=max(1, args.steps // 5), eval_batches=args.eval_batches,
                      weight_decay=args.weight_decay, device=args.device, seed=args.seed)
    check_training_memory(config, sum(t.numel() for t in state.values()), cfg.batch_size, pick_device(cfg.device))
    del state
    with output_lock(args.out, command="python -m gpt " + " ".join(args._argv), what=f"--out {args.out}"):
        return _dapt_into(args, checkpoint, config, tok, cfg)


def _dapt_into(args, checkpoint: Path, config, tok, cfg: TrainConfig) -> int:
    """The work, under the lock of ``--out``: DAPT, then the model and its card written in one step."""
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



def register(subparsers) -> None:
    """Add the ``dapt`` command to ``python -m gpt``."""
    d = subparsers.add_parser(
        "dapt",
        help="domain-adaptive pretraining: continue pretraining a checkpoint on the SMS training messages' text (no labels)",
        description=library.__doc__.split("\n\n")[1],
    )
    d.add_argument("--checkpoint", default="", help="the GPT to start from (default: the reference model)")
    d.add_argument("--steps", type=int_at_least(1), default=200)
    d.add_argument("--batch-size", type=int_at_least(1), default=16)
    d.add_argument("--lr", type=positive_float, default=3e-4)
    d.add_argument("--warmup", type=int_at_least(0), default=20)
    d.add_argument("--weight-decay", type=nonnegative_float, default=0.1)
    d.add_argument("--eval-batches", type=int_at_least(1), default=10)
    d.add_argument("--heldout-fraction", type=float, default=HELDOUT_FRACTION, help="share of the training messages held out for the LM loss")
    d.add_argument("--device", default="auto")
    d.add_argument("--seed", type=int, default=1234)
    d.add_argument("--out", default=DEFAULT_OUT)
    d.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    d.set_defaults(func=_cmd_dapt)
