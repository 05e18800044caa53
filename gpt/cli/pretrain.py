"""The pretraining commands: ``python -m gpt train-tokenizer``, ``pretrain`` and ``sample``.

``pretrain`` checks every argument and output before any work, trains (resumably, and under torchrun
on several processes), then writes the model, its card, an export and samples. Ctrl-C saves a
checkpoint and prints the command that resumes it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import load_pretraining_texts
from ..io.corpus import load_pretraining_ids
from ..io.downloads import REGISTRY, fetch
from ..errors import CheckpointError, ConfigError, OutputExistsError
from ..io.checkpoint import TrainingInterrupted
from ..io.files import atomic_dir, check_output, others_in, replace_dir, sha256_file
from ..io.lock import output_lock
from ..io.resume import CHECKPOINT_DIR, OPTIMIZER_FILE, check_resume, has_checkpoint, read_training_state
from ..io.checkpoint import STATE_FILE
from ..io.weights import load_model, read_checkpoint, save_model
from ..model import GPT, PRESETS, GPTConfig, count_parameters
from ..runtime.device import PRECISIONS, pick_device
from ..runtime.memory import check_training_memory
from ..runtime.distributed import from_environment, shutdown
from ..runtime.speed import training_flops_per_token
from ..runtime.tools import require_compiler
from ..teaching.reference import machine_description, reference_path, write_card
from ..io.tokenizer_files import COURSE_TOKENIZER_FILE, course_tokenizer_path, save_tokenizer, tokenizer_fingerprint
from ..tokenizer import course_tokenizer, encode_prompt, get_tokenizer, train_bpe
from ..train import evaluate, pretrain
from ..train_config import TrainConfig
from .args import (DEFAULT_CHECKPOINT_INTERVAL, auto_checkpoint_interval, checkpoint_interval, command_line, fraction, int_at_least,
                   nonnegative_float, parse_books, positive_float, resume_command)



# ---------------------------------------------------------------------------------------------
# Argument types: a bad value is an argparse error (status 2) that names the option


# ---------------------------------------------------------------------------------------------
# Checks shared by the commands


def _check_vocabulary(config, meta: dict, tok, path) -> None:
    """A checkpoint must have been made with ``tok``: same vocabulary size and, if recorded, fingerprint."""
    if config.vocab_size != tok.n_vocab:
        raise CheckpointError(
            f"{path} has a vocabulary of {config.vocab_size} tokens, but the course tokenizer has {tok.n_vocab}; "
            "the checkpoint was not made with the course tokenizer and cannot be sampled with it"
        )
    fp = meta.get("tokenizer_fingerprint")
    if fp is not None and fp != tokenizer_fingerprint(tok):
        raise CheckpointError(
            f"{path} was made with another tokenizer (fingerprint {fp}, the course tokenizer's is "
            f"{tokenizer_fingerprint(tok)}); its token ids would decode to the wrong text"
        )


# ---------------------------------------------------------------------------------------------
# Commands


def _cmd_train_tokenizer(args) -> int:
    out = Path(args.out or f"runs/tokenizer/course_bpe_{args.vocab_size}.json")
    assets = course_tokenizer_path().parent.resolve()
    target = out.resolve()
    if target == assets or assets in target.parents:
        raise ConfigError(
            f"--out {out} is inside the installed package's assets folder ({assets}), which holds the course "
            "vocabulary that the reference model and every command rely on; train-tokenizer never writes there. "
            "Choose another --out (the default is runs/tokenizer/course_bpe_<vocab-size>.json)"
        )
    check_output(out, kind="file", overwrite=args.overwrite)
    texts = load_pretraining_texts()
    t0 = time.perf_counter()
    enc = train_bpe(list(texts.values()), args.vocab_size, name=f"course-bpe-{args.vocab_size}", progress=True)
    print(f"trained {enc.n_vocab} tokens in {time.perf_counter() - t0:.1f} s")
    save_tokenizer(enc, out)
    print(f"saved to {out}")
    return 0


# What a run writes into --out (and the old layout's checkpoint files): ``--overwrite`` replaces these; every
# other entry of the old --out (a user's notes, plots, ...) is moved into the new run folder (gpt.io.files.replace_dir).
RUN_OUTPUTS = ("model.safetensors", "model_card.json", "MODEL_CARD.md", CHECKPOINT_DIR, STATE_FILE, OPTIMIZER_FILE)


def run_outputs(folder: Path) -> list[str]:
    """:data:`RUN_OUTPUTS` plus the temporary checkpoint folders a killed run may have left in ``folder``."""
    return [*RUN_OUTPUTS, *(p.name for p in folder.glob(f".{CHECKPOINT_DIR}.*"))]


def staging_dir(out: Path) -> Path:
    """Where ``pretrain --overwrite`` trains when ``--out`` already holds a run: ``.<name>.overwrite``
    beside it. The old run stays in ``--out`` until the new one is complete (model and card written);
    then the staging folder replaces it in one rename (:func:`gpt.io.files.replace_dir`), taking along
    every entry of the old ``--out`` that is not one of the run's outputs (:data:`RUN_OUTPUTS`)."""
    return out.parent / f".{out.name}.overwrite"


@dataclass
class _PretrainPlan:
    """What ``pretrain`` was asked for, checked: the model and training configs, the tokenizer, books,
    sample prompts, what the run records, and where it writes."""

    config: GPTConfig
    cfg: TrainConfig
    tok: object
    books: list[str]
    prompts: list
    run_info: dict
    out: Path
    exp: Path | None
    work: Path | None = None  # where training writes: out, or staging_dir(out) while --overwrite replaces a run


def _plan(args) -> _PretrainPlan:
    """1. Every argument, before any work."""
    config = GPTConfig.from_preset(args.preset)
    tok = course_tokenizer()
    if config.vocab_size != tok.n_vocab:
        raise ConfigError(
            f"preset {args.preset!r} has a vocabulary of {config.vocab_size} tokens, the course tokenizer {tok.n_vocab}; "
            "choose a preset made for the course tokenizer (course, course-tiny)"
        )
    books = parse_books(args.books)
    prompts = [encode_prompt(p, tok) for p in args.samples]
    interval = auto_checkpoint_interval(args.steps) if args.checkpoint_interval == "auto" else args.checkpoint_interval
    cfg = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, lr=args.lr, min_lr=args.lr / 10,
                      warmup_steps=min(args.warmup, args.steps), eval_interval=args.eval_interval, precision=args.precision,
                      device=args.device, seed=args.seed, checkpoint_interval=interval, compile=args.compile)
    device = pick_device(cfg.device)
    with torch.device("meta"):  # the parameter count, without allocating the weights
        n_parameters = count_parameters(GPT(config))
    check_training_memory(config, n_parameters, cfg.batch_size, device, processes=int(os.environ.get("WORLD_SIZE", "1") or 1))
    if cfg.compile:
        require_compiler()
    run_info = {"preset": args.preset, "books": books, "val_fraction": args.val_fraction, "tokenizer_fingerprint": tokenizer_fingerprint(tok)}
    return _PretrainPlan(config, cfg, tok, books, prompts, run_info, Path(args.out), Path(args.export) if args.export else None)


def _check_outputs(args, plan: _PretrainPlan) -> None:
    """2. Every output, before any work."""
    out, exp = plan.out, plan.exp
    staging = staging_dir(out)
    if args.resume:  # with --overwrite: the interrupted replacement run, if there is one
        plan.work = staging if args.overwrite and has_checkpoint(staging) else out
        check_resume(read_training_state(plan.work), cfg=plan.cfg, model_config=plan.config, run_info=plan.run_info,
                     source=str(plan.work))
    else:
        occupied = out.is_dir() and any(out.iterdir())
        if occupied and not args.overwrite:
            raise OutputExistsError(
                f"--out {out} already exists; pass --resume to continue the run in it, --overwrite to replace it, "
                "or choose another --out"
            )
        check_output(out, kind="dir", overwrite=True)
        plan.work = staging if occupied else out
    if exp is not None:
        check_output(exp, kind="dir", overwrite=args.overwrite)
        a, b = out.resolve(), exp.resolve()
        if a == b or a in b.parents or b in a.parents:
            raise ConfigError(f"--export {exp} and --out {out} must be separate folders (neither inside the other)")


def _cmd_pretrain(args) -> int:
    plan = _plan(args)
    parallel = from_environment(plan.cfg.device)  # under torchrun: this process's rank (None: the only process)
    if parallel:
        parallel.check_batch_size(plan.cfg.batch_size)
        if not parallel.is_main:  # rank 0 alone prints and writes
            sys.stdout = open(os.devnull, "w")
    main = parallel is None or parallel.is_main
    with output_lock(plan.out, command=command_line(args._argv), what=f"--out {plan.out}") if main else contextlib.nullcontext():
        _check_outputs(args, plan)
        return _train_and_finish(args, plan, parallel)


def _train_and_finish(args, plan: _PretrainPlan, parallel) -> int:
    """3. The work, in ``plan.work``; then the model, its card, and (--overwrite) the swap into ``--out``."""
    cfg, out, work = plan.cfg, plan.out, plan.work

    if parallel:
        parallel.barrier()  # every rank has checked the outputs before rank 0 writes any
    train_ids, val_ids = load_pretraining_ids(plan.tok, plan.books, val_fraction=args.val_fraction, progress=parallel is None or parallel.is_main)
    print(f"corpus: {len(plan.books)} books, {len(train_ids):,} training and {len(val_ids):,} held-out tokens")
    torch.manual_seed(args.seed)
    model = GPT(plan.config)
    print(f"model: {args.preset}, {count_parameters(model):,} parameters; checkpoint every {cfg.checkpoint_interval or cfg.max_steps} steps "
          f"in {work}/checkpoint" + (f" (the run in {out} is replaced when this one is complete)" if work != out else ""))
    try:
        hist = pretrain(model, train_ids, val_ids, cfg, run_dir=work, resume=args.resume, run_info=plan.run_info,
                        overwrite=args.overwrite and not args.resume, parallel=parallel)
        if parallel and not parallel.is_main:
            return 0  # rank 0 writes the model and its card
    except TrainingInterrupted as e:
        if parallel and not parallel.is_main:
            return 130
        if e.checkpoint:
            print(f"\ninterrupted after step {e.step} of {cfg.max_steps}; checkpoint saved in {e.checkpoint}.\n"
                  + (f"the previous run in {out} is untouched.\n" if work != out else "")
                  + f"resume with:\n  {resume_command(args._argv)}", file=sys.stderr, flush=True)
        else:
            print("\ninterrupted before the first step; nothing was saved", file=sys.stderr, flush=True)
        return 130
    finally:
        shutdown()  # (with torchrun) leave the process group; rank 0 goes on alone
    try:
        return _finish_pretrain(args, plan, hist, model, train_ids, val_ids)
    except KeyboardInterrupt:
        print(f"\ninterrupted after training finished; the checkpoint in {work}/checkpoint is complete.\n"
              f"to write the model and its card, run:\n  {resume_command(args._argv)}", file=sys.stderr, flush=True)
        return 130


def _finish_pretrain(args, plan: _PretrainPlan, hist: dict, model, train_ids, val_ids) -> int:
    """After training: held-out loss, the model and its card in the run folder, the export, samples."""
    config, cfg, books, out, exp = plan.config, plan.cfg, plan.books, plan.out, plan.exp
    fingerprint = plan.run_info["tokenizer_fingerprint"]
    device = next(model.parameters()).device
    wall = hist["seconds"][-1]
    tokens_per_second = hist["tokens"][-1] / wall
    compiled = f"; compiling took {hist['compile_seconds']:.0f} s" if hist.get("compile_seconds") else ""
    print(f"trained {cfg.max_steps} steps in {wall / 60:.1f} min: {tokens_per_second:,.0f} tokens/s, "
          f"{tokens_per_second * training_flops_per_token(config) / 1e9:.0f} model GFLOP/s "
          f"({hist['precision']}, evaluations included{compiled})")
    heldout = evaluate(model, torch.from_numpy(val_ids.astype(np.int64)), cfg.batch_size, args.heldout_batches, device, "fp32", seed=0)
    card = {
        "name": args.name,
        "preset": args.preset,
        "config": config.to_dict(),
        "parameters": count_parameters(model),
        "command": command_line(args._argv, drop=("--resume", "--overwrite")),
        "tokenizer": COURSE_TOKENIZER_FILE,
        "tokenizer_fingerprint": fingerprint,
        "corpus": {REGISTRY[b].relpath: sha256_file(fetch(b, progress=False)) for b in books},
        "val_fraction": args.val_fraction,
        "train_tokens_in_corpus": int(len(train_ids)),
        "val_tokens_in_corpus": int(len(val_ids)),
        "steps": cfg.max_steps,
        "batch_size": cfg.batch_size,
        "tokens_seen": cfg.max_steps * cfg.batch_size * config.context_length,
        "wall_seconds": round(hist["seconds"][-1], 1),
        "tokens_per_second": round(tokens_per_second),
        "machine": machine_description(),
        "precision": hist["precision"],
        "processes": hist.get("processes", 1),  # torchrun --nproc_per_node (batch_size is the global batch)
        "seed": cfg.seed,
        "final_train_loss": float(np.mean(hist["train_loss"][-50:])),
        "final_val_loss": hist["val_loss"][-1],
        "heldout_loss_fp32": heldout,
        "heldout_eval_batches": args.heldout_batches,
        "train_config": {k: v for k, v in vars(cfg).items() if k != "betas"},
    }
    meta = {"tokenizer_fingerprint": fingerprint}
    save_model(model, plan.work / "model.safetensors", metadata=meta)
    write_card(plan.work, card)
    if plan.work != out:  # --overwrite: the new run is complete; now it replaces the old one, keeping the user's files
        kept = others_in(out, plan.work, run_outputs(out))
        replace_dir(plan.work, out, outputs=run_outputs(out))
        if kept:
            print(f"kept {len(kept)} file(s) of the old {out} that are not the run's outputs: {', '.join(kept[:5])}" + (", ..." if len(kept) > 5 else ""))
    print(f"held-out loss (fp32): {heldout:.4f}; wrote {out}/model.safetensors and {out}/MODEL_CARD.md")
    if exp is not None:
        with atomic_dir(exp, overwrite=args.overwrite) as tmp:
            save_model(model, tmp / "model.safetensors", metadata=meta)
            write_card(tmp, card)
        print(f"exported to {exp}")
    _print_samples(model, plan.tok, plan.prompts, args.seed)
    return 0


def _print_samples(model, tok, prompts, seed, max_new_tokens=40, temperature=0.8, top_k=50):
    """Print a continuation of each prompt (a string, or its token ids from :func:`gpt.tokenizer.encode_prompt`)."""
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    for prompt in prompts:
        ids = encode_prompt(prompt, tok) if isinstance(prompt, str) else list(prompt)
        idx = torch.tensor([ids], device=device)
        out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, eos_id=tok.eot_token, generator=g)
        print("---", repr(tok.decode(ids)), "->", tok.decode(out[0].tolist()))


def _cmd_sample(args) -> int:
    if args.base:  # GPT-2's weights from Hugging Face, with GPT-2's tokenizer

        if args.checkpoint:
            raise ConfigError("give either --checkpoint (a course checkpoint) or --base (GPT-2 weights from Hugging Face), not both")
        model = GPT.from_pretrained(args.base)
        tok = get_tokenizer(model.tokenizer_name or "course")
        prompts = [encode_prompt(p, tok) for p in args.prompt]
        _print_samples(model, tok, prompts, args.seed, args.max_new_tokens, args.temperature, args.top_k)
        return 0
    path = Path(args.checkpoint) if args.checkpoint else reference_path()
    config, _, meta = read_checkpoint(path)
    tok = get_tokenizer(meta["tokenizer"]) if meta.get("tokenizer") else course_tokenizer()
    prompts = [encode_prompt(p, tok) for p in args.prompt]
    _check_vocabulary(config, meta, tok, path)
    model = load_model(path)
    _print_samples(model, tok, prompts, args.seed, args.max_new_tokens, args.temperature, args.top_k)
    return 0


def register(sub) -> None:
    """Add ``train-tokenizer``, ``pretrain`` and ``sample`` to ``python -m gpt``."""
    t = sub.add_parser("train-tokenizer", help="train a BPE vocabulary on the Gutenberg corpus (into runs/, never over the shipped one)")
    t.add_argument("--vocab-size", type=int_at_least(257), default=4096, help="tokens, special token included (>= 257)")
    t.add_argument("--out", default="", help="the JSON file to write (default: runs/tokenizer/course_bpe_<vocab-size>.json); "
                   "the package's own assets folder is refused")
    t.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    t.set_defaults(func=_cmd_train_tokenizer)

    r = sub.add_parser("pretrain", help="pretrain a GPT on the Gutenberg books and print samples",
                       description="Pretrain a GPT on the Gutenberg books. On several GPUs (or CPU processes): "
                       "torchrun --nproc_per_node N -m gpt pretrain ... (DistributedDataParallel, see gpt.runtime.distributed).")
    r.add_argument("--preset", default="course", choices=sorted(PRESETS))
    r.add_argument("--steps", type=int_at_least(1), default=300)
    r.add_argument("--batch-size", type=int_at_least(1), default=16,
                   help="windows per step, over all processes (under torchrun: divisible by --nproc_per_node)")
    r.add_argument("--lr", type=positive_float, default=3e-3)
    r.add_argument("--warmup", type=int_at_least(0), default=100)
    r.add_argument("--eval-interval", type=int_at_least(1), default=100)
    r.add_argument("--heldout-batches", type=int_at_least(1), default=50)
    r.add_argument("--val-fraction", type=fraction, default=0.05)
    r.add_argument("--precision", default="auto", choices=list(PRECISIONS))
    r.add_argument("--device", default="auto")
    r.add_argument("--compile", action="store_true",
                   help="torch.compile the forward pass and loss: faster steps after a compile of ~5-60 s (see bench/results/vs_reference.md)")
    r.add_argument("--seed", type=int, default=1234)
    r.add_argument("--books", default="", help="comma-separated registry names (default: all 22 books)")
    r.add_argument("--checkpoint-interval", type=checkpoint_interval, default="auto",
                   help="save a resumable checkpoint every N steps (0: only at the end; default 'auto': "
                   f"steps/10, at most {DEFAULT_CHECKPOINT_INTERVAL}); Ctrl-C always saves one")
    r.add_argument("--out", default="runs/pretrain", help="the run folder (refused if it exists, unless --resume or --overwrite)")
    r.add_argument("--resume", action="store_true", help="continue the run in --out (same arguments)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing --out run (unless --resume) and --export folder")
    r.add_argument("--export", default="", help="also write the weights and model card (no optimizer state) here")
    r.add_argument("--name", default="course GPT")
    r.add_argument("--samples", nargs="*", default=["The old man", "It was a dark and stormy night", "She said"])
    r.set_defaults(func=_cmd_pretrain)

    s = sub.add_parser("sample", help="generate text from a checkpoint (default: the reference model)")
    s.add_argument("--checkpoint", default="", help="a .safetensors file (default: the shipped reference model)")
    s.add_argument("--base", default="", help="instead: GPT-2's weights from Hugging Face (gpt2, ... or a local folder)")
    s.add_argument("--prompt", nargs="+", default=["The old man"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--max-new-tokens", type=int_at_least(1), default=40)
    s.add_argument("--temperature", type=nonnegative_float, default=0.8, help="0: greedy")
    s.add_argument("--top-k", type=int_at_least(1), default=50)
    s.set_defaults(func=_cmd_sample)
