"""Command line: ``python -m gpt <command>`` (see ``python -m gpt --help``)."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch


def _cmd_train_tokenizer(args) -> int:
    from .data import load_pretraining_texts
    from .tokenizer import save_tokenizer, train_bpe

    texts = load_pretraining_texts()
    t0 = time.perf_counter()
    enc = train_bpe(list(texts.values()), args.vocab_size, name=f"course-bpe-{args.vocab_size}", progress=True)
    print(f"trained {enc.n_vocab} tokens in {time.perf_counter() - t0:.1f} s")
    save_tokenizer(enc, args.out)
    print(f"saved to {args.out}")
    return 0


def _cmd_pretrain(args) -> int:
    from .data import REGISTRY, PRETRAIN_BOOKS, fetch, load_pretraining_ids, sha256_file
    from .model import GPT, GPTConfig, count_parameters
    from .reference import machine_description, write_card
    from .tokenizer import COURSE_TOKENIZER_FILE, course_tokenizer, tokenizer_fingerprint
    from .train import TrainConfig, evaluate, pretrain, save_model

    tok = course_tokenizer()
    config = GPTConfig.from_preset(args.preset)
    if config.vocab_size != tok.n_vocab:
        print(f"error: preset {args.preset} has vocabulary {config.vocab_size}, the course tokenizer {tok.n_vocab}", file=sys.stderr)
        return 2
    books = args.books.split(",") if args.books else PRETRAIN_BOOKS
    train_ids, val_ids = load_pretraining_ids(tok, books, val_fraction=args.val_fraction, progress=True)
    print(f"corpus: {len(books)} books, {len(train_ids):,} training and {len(val_ids):,} held-out tokens")
    cfg = TrainConfig(
        max_steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        min_lr=args.lr / 10,
        warmup_steps=min(args.warmup, args.steps),
        eval_interval=args.eval_interval,
        precision=args.precision,
        device=args.device,
        seed=args.seed,
        checkpoint_interval=args.checkpoint_interval,
    )
    torch.manual_seed(args.seed)
    model = GPT(config)
    print(f"model: {args.preset}, {count_parameters(model):,} parameters")
    out = Path(args.out)
    hist = pretrain(model, train_ids, val_ids, cfg, run_dir=out, resume=args.resume)
    device = next(model.parameters()).device
    heldout = evaluate(model, torch.from_numpy(val_ids.astype(np.int64)), cfg.batch_size, args.heldout_batches, device, "fp32", seed=0)
    card = {
        "name": args.name,
        "preset": args.preset,
        "config": config.to_dict(),
        "parameters": count_parameters(model),
        "command": "python -m gpt " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "tokenizer": COURSE_TOKENIZER_FILE,
        "tokenizer_fingerprint": tokenizer_fingerprint(tok),
        "corpus": {REGISTRY[b].relpath: sha256_file(fetch(b, progress=False)) for b in books},
        "val_fraction": args.val_fraction,
        "train_tokens_in_corpus": int(len(train_ids)),
        "val_tokens_in_corpus": int(len(val_ids)),
        "steps": cfg.max_steps,
        "batch_size": cfg.batch_size,
        "tokens_seen": cfg.max_steps * cfg.batch_size * config.context_length,
        "wall_seconds": round(hist["seconds"][-1], 1),
        "machine": machine_description(),
        "precision": hist["precision"],
        "seed": cfg.seed,
        "final_train_loss": float(np.mean(hist["train_loss"][-50:])),
        "final_val_loss": hist["val_loss"][-1],
        "heldout_loss_fp32": heldout,
        "heldout_eval_batches": args.heldout_batches,
        "train_config": {k: v for k, v in vars(cfg).items() if k != "betas"},
    }
    write_card(out, card)
    print(f"held-out loss (fp32): {heldout:.4f}; wrote {out}/model.safetensors and {out}/MODEL_CARD.md")
    if args.export:
        exp = Path(args.export)
        exp.mkdir(parents=True, exist_ok=True)
        save_model(model.cpu(), exp / "model.safetensors", metadata={"tokenizer_fingerprint": card["tokenizer_fingerprint"]})
        for f in ("model_card.json", "MODEL_CARD.md"):
            shutil.copy(out / f, exp / f)
        print(f"exported to {exp}")
    _print_samples(model, tok, args.samples, args.seed)
    return 0


def _print_samples(model, tok, prompts, seed):
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    for prompt in prompts:
        idx = torch.tensor([tok.encode(prompt)], device=device)
        out = model.generate(idx, 40, temperature=0.8, top_k=50, eos_id=tok.eot_token, generator=g)
        print("---", repr(prompt), "->", tok.decode(out[0].tolist()))


def _cmd_sample(args) -> int:
    from .tokenizer import course_tokenizer
    from .train import load_model
    from .reference import reference_path

    model = load_model(args.checkpoint or reference_path())
    _print_samples(model, course_tokenizer(), args.prompt, args.seed)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m gpt", description="Build, pretrain and fine-tune a GPT from scratch.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train-tokenizer", help="train the course BPE vocabulary on the Gutenberg corpus")
    t.add_argument("--vocab-size", type=int, default=4096)
    t.add_argument("--out", default="gpt/assets/course_bpe_4096.json")
    t.set_defaults(func=_cmd_train_tokenizer)

    r = sub.add_parser("pretrain", help="pretrain a GPT on the Gutenberg books and print samples")
    r.add_argument("--preset", default="course")
    r.add_argument("--steps", type=int, default=300)
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--lr", type=float, default=3e-3)
    r.add_argument("--warmup", type=int, default=100)
    r.add_argument("--eval-interval", type=int, default=100)
    r.add_argument("--heldout-batches", type=int, default=50)
    r.add_argument("--val-fraction", type=float, default=0.05)
    r.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    r.add_argument("--device", default="auto")
    r.add_argument("--seed", type=int, default=1234)
    r.add_argument("--books", default="", help="comma-separated registry names (default: all 22 books)")
    r.add_argument("--checkpoint-interval", type=int, default=500)
    r.add_argument("--out", default="runs/pretrain")
    r.add_argument("--resume", action="store_true", help="continue the run in --out")
    r.add_argument("--export", default="", help="also write the weights and model card (no optimizer state) here")
    r.add_argument("--name", default="course GPT")
    r.add_argument("--samples", nargs="*", default=["The old man", "It was a dark and stormy night", "She said"])
    r.set_defaults(func=_cmd_pretrain)

    s = sub.add_parser("sample", help="generate text from a checkpoint (default: the reference model)")
    s.add_argument("--checkpoint", default="")
    s.add_argument("--prompt", nargs="+", default=["The old man"])
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_cmd_sample)

    from .experiment import register_cli as register_experiment_commands

    register_experiment_commands(sub)  # finetune and experiment

    args = p.parse_args(argv)
    return args.func(args)
