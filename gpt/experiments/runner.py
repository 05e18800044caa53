"""The fine-tuning commands: ``python -m gpt finetune`` (one strategy, several seeds) and
``python -m gpt experiment`` (the course's headline experiment: what LoRA buys, measured).

``experiment`` fine-tunes the reference checkpoint on the balanced SMS spam split with

* full fine-tuning, the last block (+ final norm + head), the head only,
* LoRA at ranks 1, 2, 4, 8, 16, 32 on every Linear layer of the transformer blocks (lora_alpha = 2·r,
  so the update's scale lora_alpha / r is 2 at every rank; the new classification head trains fully),
* and fits the bag-of-words baseline,

each with 3 seeds, every run in a fresh Python process (so timing and memory of one run do not
depend on the runs before it). Without ``--out`` it writes to a new run folder
``runs/experiment/<date>-<time>/`` (never into the committed ``results/``; run again, it resumes its own
unfinished run), shows runs done of the total with an ETA and one line per finished run, and ends with
the results beside the committed ones (``results/finetune``), one verdict per strategy: identical, same
within noise, or differs (:func:`gpt.experiments.compare.reproduction_table`). Replacing the committed results is a
deliberate step: ``--out results/finetune --overwrite``. Each run adds a row to ``<out>/results.csv`` (see
:data:`gpt.experiments.results.RESULT_COLUMNS`) and writes ``<out>/runs/<strategy>_seed<seed>.json``; at the
end the command writes ``<out>/summary.md`` (mean ± std per strategy) and
``<out>/accuracy_vs_params.png`` (test accuracy against trainable parameters, log x).

Nothing is lost: every output is checked before the first run; a result row is replaced only with
``--overwrite``; Ctrl-C saves the running run's state in ``<out>/checkpoints/`` and prints the
command that resumes (``finetune ... --resume``, ``experiment ... --skip-existing``).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..errors import ConfigError
from ..finetune import ALL_STRATEGIES, FinetuneConfig, default_config, lora_label
from .results import check_results_dir, strategy_order
from .run_folder import (RUNS_ROOT, Progress, default_run_folder, experiment_plan, finished_row, print_comparison, splits_of,
                         write_plan)
from ..runtime.device import pick_device

__all__ = ["experiment_runs", "run_experiment", "run_finetune", "register_cli", "LORA_RANKS", "LORA_ALPHA_PER_RANK"]

LORA_RANKS = (1, 2, 4, 8, 16, 32)  # the ranks the experiment compares
LORA_ALPHA_PER_RANK = 2.0  # lora_alpha = 2·r: the same scale lora_alpha / r = 2 at every rank
COMMITTED = "finetune"  # results/finetune: the committed headline runs that a rerun is compared with
FINETUNE_OUT = "runs/finetune"  # python -m gpt finetune's default --out
INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C


# ---------------------------------------------------------------------------------------------
# One run


def checkpoint_folder(out: str | Path, config: FinetuneConfig) -> Path:
    """Where the state of a running (or interrupted) run is kept: ``<out>/checkpoints/<label>_seed<seed>``."""
    return Path(out) / "checkpoints" / f"{config.label}_seed{config.seed}"


def run_finetune(config: FinetuneConfig, out: str | Path, checkpoint: str | Path | None = None, command: str = "",
                 resume: bool = False, overwrite: bool = False, progress: bool = True, base: str | None = None) -> dict:
    """Fine-tune (or fit the baseline) as ``config`` says and write its result row into ``out``.

    ``checkpoint``: the pretrained GPT (default: the reference model); or ``base``: GPT-2's weights from
    Hugging Face (``"gpt2"``, ... or a local folder; the row's ``checkpoint`` is then the base's name and
    ``checkpoint_sha256`` that of its ``model.safetensors``). With ``resume``, a run
    interrupted earlier continues from ``<out>/checkpoints/``. A :class:`~gpt.finetune.TrainingInterrupted`
    propagates after the state was saved. Returns the row.
    """
    from .baseline import train_baseline
    from ..data import sha256_file
    from ..finetune import build_model, finetune
    from ..teaching.reference import machine_description, reference_path, source_commit
    from ..io.files import display_path
    from .results import check_results_dir, refresh_summary, result_row, task_storage_bytes, write_result
    from ..sms import run_splits

    label = config.label
    check_results_dir(out, [(label, config.seed)], overwrite=overwrite)
    ck_dir = checkpoint_folder(out, config)
    if ck_dir.exists() and not resume:
        if not overwrite:
            raise ConfigError(
                f"{ck_dir} holds the state of an interrupted run of {label} seed {config.seed}; pass --resume to continue it, "
                "or --overwrite to start afresh"
            )
        shutil.rmtree(ck_dir)
    splits = run_splits(config.train_split, config.fold, config.folds)  # the pinned splits, or a fold; + train_natural if asked
    extra = {"command": command, "machine": machine_description(), "commit": source_commit()}
    if config.strategy == "baseline":
        result = train_baseline(splits, config, progress=progress)
        extra.update(checkpoint="", checkpoint_sha256="")
    else:
        if base:
            model = build_model(config, base=base)
            ckpt = model.gpt.pretrained.main_weights  # the weights file: its sha256 identifies the base
        else:
            ckpt = Path(checkpoint) if checkpoint else reference_path()
            model = build_model(config, ckpt)
        from ..model import count_parameters

        print(f"{label}: {count_parameters(model, trainable_only=True):,} of {count_parameters(model):,} parameters train (seed {config.seed})")
        result = finetune(model, splits, config, progress=progress, checkpoint_dir=ck_dir, resume=resume and ck_dir.exists())
        extra.update(checkpoint=str(base) if base else display_path(ckpt), checkpoint_sha256=sha256_file(ckpt),
                     stored_bytes=task_storage_bytes(model, ckpt))
    row = result_row(result, extra)
    write_result(out, row, result, overwrite=True)  # checked above; a resumed run replaces nothing else
    refresh_summary(out, splits)  # with the intervals and paired comparisons of every run so far
    shutil.rmtree(ck_dir, ignore_errors=True)
    if ck_dir.parent.is_dir() and not any(ck_dir.parent.iterdir()):
        ck_dir.parent.rmdir()
    print(
        f"{label} seed {config.seed}: best epoch {row['best_epoch']}, balanced test accuracy {row['test_accuracy']:.4f}, "
        f"F1 {row['test_f1']:.4f}; natural test accuracy {row['natural_accuracy']:.4f}, F1 {row['natural_f1']:.4f}; "
        f"{row['wall_seconds']:.1f} s"
    )
    return row


# ---------------------------------------------------------------------------------------------
# python -m gpt finetune

# command-line flag -> FinetuneConfig field
_FLAGS = {"epochs": "epochs", "lr": "lr", "batch_size": "batch_size", "weight_decay": "weight_decay", "l2": "l2",
          "dropout": "dropout", "classifier_dropout": "classifier_dropout", "rank": "r", "alpha": "lora_alpha",
          "train_split": "train_split", "class_weight": "class_weight", "fold": "fold", "folds": "folds",
          "use_rslora": "use_rslora", "use_dora": "use_dora", "init_lora_weights": "init_lora_weights",
          "loraplus_lr_ratio": "loraplus_lr_ratio", "target_modules": "target_modules"}


def _configs(args) -> list[FinetuneConfig]:
    """One config per seed from the command line; every error before any work."""
    if len(set(args.seeds)) != len(args.seeds):
        raise ConfigError(f"--seeds repeats a seed: {args.seeds}")
    overrides = {field: getattr(args, flag) for flag, field in _FLAGS.items() if getattr(args, flag) is not None}
    if args.strategy != "baseline":
        overrides.update(device=args.device, precision=args.precision)
    for flag, field in _FLAGS.items():  # name the flag, not the config field, in the message
        if field in overrides and args.strategy not in _applies_to(field):
            raise ConfigError(f"--{flag.replace('_', '-')} does not apply to the strategy {args.strategy!r}")
    return [default_config(args.strategy, **overrides, seed=s) for s in args.seeds]


def _applies_to(field: str) -> tuple[str, ...]:
    from ..finetune_config import ONLY_FOR

    return ONLY_FOR.get(field, ALL_STRATEGIES)


def _check_checkpoint(path: str) -> None:
    """A pretrained GPT checkpoint that loads and matches the course tokenizer, checked before any run."""
    from ..classifier import check_vocabulary
    from ..tokenizer import course_tokenizer
    from ..train import read_checkpoint

    config, _, meta = read_checkpoint(path)
    check_vocabulary(config, course_tokenizer(), meta.get("tokenizer_fingerprint"), source=str(path))


def _check_base(base: str, checkpoint: str = "") -> Path:
    """A Hugging Face GPT-2 base (hub name or folder) whose files are there (fetched now if need be),
    checked before any run; returns its weights file."""
    from ..io.hf import resolve_pretrained

    if checkpoint:
        raise ConfigError("give either --checkpoint (a course checkpoint) or --base (GPT-2 weights from Hugging Face), not both")
    return resolve_pretrained(base).main_weights


def _resume_hint(command: str, flag: str) -> str:
    return command if flag in shlex.split(command) else f"{command} {flag}"


def _cmd_finetune(args) -> int:
    from .results import check_results_dir

    command = args.command_line or "python -m gpt " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    configs = _configs(args)
    if args.strategy != "baseline":
        pick_device(args.device)  # an unknown or unavailable device is a ConfigError, before any run
        if args.checkpoint:
            _check_checkpoint(args.checkpoint)
        if args.base:
            _check_base(args.base, args.checkpoint)
    done = check_results_dir(args.out, [(c.label, c.seed) for c in configs], overwrite=args.overwrite or args.resume)
    if args.resume:
        skipped = [c for c in configs if (c.label, c.seed) in done and not checkpoint_folder(args.out, c).exists()]
        for c in skipped:
            print(f"{c.label} seed {c.seed}: already in {args.out}/results.csv, skipped (--resume)")
        configs = [c for c in configs if c not in skipped]
    in_process = args.in_process or (len(configs) == 1 and args.in_process is None)
    for c in configs:
        if in_process:
            from ..finetune import TrainingInterrupted

            try:
                run_finetune(c, args.out, args.checkpoint or None, command, resume=args.resume, overwrite=args.overwrite,
                             base=args.base or None)
            except TrainingInterrupted as e:
                print(f"\n{e}\nresume with: {_resume_hint(command, '--resume')}", file=sys.stderr)
                return INTERRUPTED
            continue
        # One fresh process per seed, so that wall time and peak memory are not affected by the runs before.
        child = _forwarded_args(args) + ["--seeds", str(c.seed), "--in-process", "--command-line", command]
        rc = _call_child(child)
        if rc:
            return rc
    return 0


def _call_child(child_args: list[str]) -> int:
    """Run ``python -m gpt <child_args>``; Ctrl-C reaches the child too, which saves its state first."""
    proc = subprocess.Popen([sys.executable, "-m", "gpt", *child_args])
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue  # the child got the same Ctrl-C: wait until it has saved and exited


def _forwarded_args(args) -> list[str]:
    out = ["finetune", "--strategy", args.strategy, "--out", str(args.out), "--device", args.device, "--precision", args.precision]
    if args.checkpoint:
        out += ["--checkpoint", args.checkpoint]
    if args.base:
        out += ["--base", args.base]
    for flag in _FLAGS:
        v = getattr(args, flag)
        if v is True:  # a switch (--use-dora)
            out.append(f"--{flag.replace('_', '-')}")
        elif isinstance(v, list):  # several values (--target-modules q_proj v_proj)
            out += [f"--{flag.replace('_', '-')}", *v]
        elif v is not None:
            out += [f"--{flag.replace('_', '-')}", str(v)]
    return out + (["--resume"] if args.resume else []) + (["--overwrite"] if args.overwrite else [])


# ---------------------------------------------------------------------------------------------
# python -m gpt experiment


def experiment_runs(strategies=ALL_STRATEGIES, ranks=LORA_RANKS) -> list[tuple[str, list[str]]]:
    """``(result label, extra finetune arguments)`` of every configuration the experiment trains."""
    runs = []
    for s in strategies:
        if s == "lora":
            runs += [(lora_label(r), ["--strategy", "lora", "--rank", str(r), "--alpha", f"{LORA_ALPHA_PER_RANK * r:g}"]) for r in ranks]
        elif s in ALL_STRATEGIES:
            runs.append((s, ["--strategy", s]))
        else:
            raise ConfigError(f"unknown strategy {s!r}; choose from {list(ALL_STRATEGIES)}")
    return sorted(runs, key=lambda r: strategy_order(r[0]))


def _rows_to_keep(out: Path, checkpoint_sha: str) -> set[tuple[str, int]]:
    """Rows already in ``results.csv`` made from this checkpoint (the baseline uses none)."""
    import pandas as pd

    csv = out / "results.csv"
    if not csv.exists():
        return set()
    t = pd.read_csv(csv)
    keep = (t["strategy"] == "baseline") | (t["checkpoint_sha256"] == checkpoint_sha)
    return {(s, int(seed)) for s, seed in zip(t.loc[keep, "strategy"], t.loc[keep, "seed"])}


def _child_args(label: str, args: list[str], seed: int, out: Path, plan: dict, command: str, checkpoint: str,
                resume: bool, overwrite: bool) -> list[str]:
    """The ``python -m gpt finetune`` arguments of one run of the plan."""
    child = ["finetune", *args, "--seeds", str(seed), "--in-process", "--out", str(out), "--device", plan["device"],
             "--precision", plan["precision"], "--command-line", command]
    if checkpoint:
        child += ["--checkpoint", str(checkpoint)]
    if plan["base"]:
        child += ["--base", str(plan["base"])]
    if plan["epochs"] is not None and label != "baseline":
        child += ["--epochs", str(plan["epochs"])]
    if resume:
        child += ["--resume"]
    if plan["train_split"] is not None:
        child += ["--train-split", plan["train_split"]]
    if plan["class_weight"] is not None:
        child += ["--class-weight", plan["class_weight"]]
    if plan["fold"] is not None:
        child += ["--fold", str(plan["fold"]), "--folds", str(plan["folds"])]
    return child + (["--overwrite"] if overwrite else [])


def run_experiment(
    out: str | Path | None = None,
    seeds=(0, 1, 2),
    strategies=ALL_STRATEGIES,
    ranks=LORA_RANKS,
    checkpoint: str = "",
    epochs: int | None = None,
    skip_existing: bool = False,
    command: str = "",
    device: str = "cpu",
    overwrite: bool = False,
    train_split: str | None = None,
    class_weight: str | None = None,
    kfold: int | None = None,
    fold: int | None = None,
    folds: int = 5,
    *,
    base: str = "",
    runs: list[tuple[str, list[str]]] | None = None,
    against: str | Path | None = None,
    precision: str = "auto",
) -> Path:
    """Run every configuration of :func:`experiment_runs` for every seed (one process each); then
    write the summary and the plot, and compare with the committed results. Returns the path of ``results.csv``.

    ``out=None``: a run folder of its own under ``runs/experiment/`` (:func:`default_run_folder`): the
    unfinished one with the same plan is resumed, else a new one is made. An ``out`` given explicitly
    is a results folder like the committed ones: existing rows there are an error before any run unless
    ``skip_existing`` (keep rows made from the same checkpoint, resume interrupted runs) or ``overwrite``.

    ``runs``: other ``(label, finetune arguments)`` configurations instead of ``strategies`` × ``ranks``
    (the LoRA variants suite, :func:`gpt.experiments.ablations.variant_runs`); the plot is then left to the caller.
    ``epochs`` overrides every GPT strategy's default (quick trials; the recorded experiment uses the defaults).
    ``base`` fine-tunes GPT-2's weights from Hugging Face instead of ``checkpoint`` (``"gpt2"``, ... or a folder).
    ``train_split`` / ``class_weight`` set those :class:`~gpt.finetune.FinetuneConfig` fields of every run.
    ``against``: the results folder the end compares with (:func:`gpt.experiments.compare.reproduction_table`;
    default the committed ``results/finetune`` where there is one, ``""`` for none).

    With ``kfold=K`` the whole experiment runs on each fold of :func:`gpt.sms.kfold_splits` in turn,
    into ``<out>/fold<i>/`` (each a results folder of its own), and ``<out>/summary.md`` pools the
    folds' predictions: every message of the collection is then tested once
    (:func:`gpt.experiments.compare.kfold_markdown`). Returns ``<out>/summary.md`` in that case.
    """
    from ..data import sha256_file
    from ..teaching.reference import reference_path

    custom = runs is not None
    runs = list(runs) if custom else experiment_runs(strategies, ranks)
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct and at least one, got {seeds}")
    if epochs is not None:
        default_config("full", epochs=epochs)  # checks the value before any run
    for r in ranks if "lora" in strategies and not custom else ():
        default_config("lora", r=r, lora_alpha=LORA_ALPHA_PER_RANK * r)  # a bad rank is an error before any run
    if kfold is not None:
        default_config("full", folds=kfold, fold=0)  # checks K before any run
    ckpt = Path(checkpoint) if checkpoint else reference_path()
    if checkpoint:
        _check_checkpoint(checkpoint)
    if base:
        ckpt = _check_base(base, checkpoint)
    pick_device(device)
    default_config("full", precision=precision)  # checks the value before any run
    plan = experiment_plan(runs, seeds, sha256_file(ckpt), epochs, device, train_split, class_weight, fold, folds, kfold, base, precision)
    command = command or "python -m gpt experiment"
    if out is None:
        out, resumed = default_run_folder(plan)
        skip_existing = True  # its own folder: resume what is there
        print(f"experiment: {'resuming the unfinished run in' if resumed else 'a new run folder'} {out}")
    out = Path(out)
    if kfold is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_plan(out, plan, command)
        for i in range(kfold):
            print(f"\n=== fold {i} of {kfold} ===", flush=True)
            run_experiment(out / f"fold{i}", seeds, strategies, ranks, checkpoint, epochs, skip_existing, command, device,
                           overwrite, train_split, class_weight, fold=i, kfold=None, folds=kfold, base=base,
                           runs=runs if custom else None, against="", precision=precision)
        from .compare import write_kfold_summary

        write_plan(out, plan, command, finished=True)
        return write_kfold_summary(out, kfold, order=strategy_order)
    reference = _reference_for(against, out)  # a bad --against is an error before any run
    _run_all(out, runs, seeds, plan, command, checkpoint, skip_existing, overwrite, reference)
    if (out / "results.csv").exists():
        from .results import refresh_summary
        from ..sms import run_splits
        from ..teaching.viz import plot_accuracy_vs_params

        refresh_summary(out, run_splits(fold=fold, folds=folds))
        if not custom:
            plot_accuracy_vs_params(out / "results.csv", out / "accuracy_vs_params.png")
    write_plan(out, plan, command, finished=True)
    print(f"\nexperiment done: {out / 'summary.md'}" + ("" if custom else f", {out / 'accuracy_vs_params.png'}"))
    if reference is not None and not custom and fold is None and train_split is None and class_weight is None:
        print_comparison(out, reference)
    return out / "results.csv"


def _reference_for(against: str | Path | None, out: Path) -> Path | None:
    """The folder to compare with: ``against``, or the committed results/finetune; None when there is
    none, or it is ``out`` itself (``--out results/finetune --overwrite`` replaces it)."""
    if against == "":
        return None
    from ..teaching.course import results_dir

    ref = Path(against) if against is not None else results_dir(COMMITTED)
    if not (ref / "runs").is_dir():
        if against is not None:
            raise ConfigError(f"--against {ref}: it holds no runs/ folder of fine-tuning runs")
        return None
    if ref.resolve() == out.resolve():
        return None
    return ref


def _run_all(out: Path, runs, seeds, plan: dict, command: str, checkpoint: str, skip_existing: bool, overwrite: bool,
             reference: Path | None) -> None:
    """Every run of the plan not yet in ``out``, each in a fresh process, with the progress lines."""
    pairs = [(label, seed) for label, _ in runs for seed in seeds]
    existing = check_results_dir(out, pairs, overwrite=overwrite or skip_existing)
    done = _rows_to_keep(out, plan["checkpoint_sha256"]) if skip_existing else set()
    todo = [(label, args, seed) for label, args in runs for seed in seeds if (label, seed) not in done]
    out.mkdir(parents=True, exist_ok=True)
    write_plan(out, plan, command)
    print(f"experiment: {len(runs)} configurations x {len(seeds)} seeds = {len(pairs)} runs, {len(pairs) - len(todo)} already done; "
          f"results in {out}", flush=True)
    progress = Progress(todo, len(pairs), reference)
    for label, args, seed in todo:
        progress.start(label, seed)
        t0 = time.perf_counter()
        rc = _call_child(_child_args(label, args, seed, out, plan, command, checkpoint, resume=skip_existing,
                                     overwrite=overwrite or (label, seed) in existing))  # a row from another checkpoint is replaced
        if rc == INTERRUPTED:
            raise KeyboardInterrupt
        if rc:
            raise RuntimeError(f"the run {label} seed {seed} failed (exit code {rc}); run the same command again to resume")
        progress.finish(label, seed, time.perf_counter() - t0, finished_row(out, label, seed))


def _folds_of(out: Path) -> int | None:
    """K when ``out`` is a k-fold experiment's folder (``fold0/`` … ``fold<K-1>/``), else None."""
    k = 0
    while (out / f"fold{k}" / "results.csv").is_file():
        k += 1
    return k or None


def _cmd_summarize(args) -> int:
    from ..io.files import check_output
    from .results import refresh_summary

    out = Path(args.out)
    folds = _folds_of(out)
    if folds is None and not (out / "results.csv").is_file():
        raise ConfigError(f"{out / 'results.csv'} does not exist: nothing to summarize (run `python -m gpt experiment` first, or pass --out)")
    check_output(out / "summary.md", kind="file", overwrite=True)
    against = Path(args.against) if args.against else None
    if against is not None and not (against / "runs").is_dir():
        raise ConfigError(f"--against {against}: it holds no runs/ folder of fine-tuning runs")
    if folds is not None:
        if against is not None:
            raise ConfigError(f"--against compares runs on the same test messages; {out} is a {folds}-fold experiment (summarize a fold folder instead)")
        from .compare import write_kfold_summary

        print(f"wrote {write_kfold_summary(out, folds, order=strategy_order)}")
        return 0
    path = refresh_summary(out, splits_of(out), against)
    print(f"wrote {path}")
    return 0


def _cmd_experiment(args) -> int:
    from ..runtime.profile import get_profile

    command = args.command_line or "python -m gpt " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    _apply_profile(args, get_profile())
    if args.suite == "variants":
        return _cmd_variants(args, command)
    try:
        run_experiment(args.out, args.seeds, tuple(args.strategies), tuple(args.ranks), args.checkpoint, args.epochs,
                       args.skip_existing, command, args.device, args.overwrite, args.train_split, args.class_weight, args.kfold,
                       base=args.base, against=args.against, precision=args.precision)
    except KeyboardInterrupt:
        hint = "the same command" if args.out is None else _resume_hint(command, "--skip-existing")
        print(f"\nexperiment interrupted; resume with: {hint}", file=sys.stderr)
        return INTERRUPTED
    return 0


def _apply_profile(args, profile) -> None:
    """``GPT_PROFILE=ci``: the main job as a smoke run (one seed, LoRA r=8 only, one epoch), unless the
    flags say otherwise (flags left at their defaults are ``None``)."""
    if args.seeds is None:
        args.seeds = list(profile.experiment_seeds or (0, 1, 2))
    if args.ranks is None:
        args.ranks = list(profile.experiment_ranks or LORA_RANKS)
    if args.epochs is None and profile.experiment_epochs is not None:
        args.epochs = profile.experiment_epochs
        print(f"profile {profile.name}: a smoke run (seeds {args.seeds}, LoRA ranks {args.ranks}, {args.epochs} epoch per run); "
              "GPT_PROFILE=default for the real experiment", flush=True)


def _cmd_variants(args, command: str) -> int:
    """``experiment --suite variants``: the LoRA variants ablation (:mod:`gpt.experiments.ablations`)."""
    from .ablations import run_variants, variant_runs

    defaults = {"strategies": list(ALL_STRATEGIES), "ranks": list(LORA_RANKS), "base": "", "kfold": None, "train_split": None,
                "class_weight": None, "against": None, "precision": "auto"}
    changed = [k for k, v in defaults.items() if getattr(args, k, v) != v]
    if changed:
        raise ConfigError(f"--suite variants runs its own configurations; --{changed[0].replace('_', '-')} does not apply to it")
    out = args.out
    if out is None:
        from ..data import sha256_file
        from ..teaching.reference import reference_path

        ckpt = args.checkpoint or reference_path()
        plan = experiment_plan(variant_runs(), args.seeds, sha256_file(ckpt), args.epochs, args.device)
        out, resumed = default_run_folder(plan, RUNS_ROOT / "variants")
        args.skip_existing = True
        print(f"experiment --suite variants: {'resuming the unfinished run in' if resumed else 'a new run folder'} {out}")
    try:
        path = run_variants(out, args.seeds, args.checkpoint, args.epochs, args.skip_existing, command, args.device, args.overwrite)
    except KeyboardInterrupt:
        print(f"\nexperiment interrupted; resume with: {_resume_hint(command, '--skip-existing')}", file=sys.stderr)
        return INTERRUPTED
    print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------------------------
# Registration


def _data_arguments(parser) -> None:
    parser.add_argument("--train-split", default=None, choices=["train", "train_natural"],
                        help="train on the balanced train split (default) or on every message outside val/test (gpt.sms.natural_train)")
    parser.add_argument("--class-weight", default=None, choices=["balanced"],
                        help="weight each class's loss by n / (2 n_class) of the training set (default: unweighted)")


def register_cli(subparsers) -> None:
    """Add the ``finetune`` and ``experiment`` commands to the ``python -m gpt`` argument parser's subparsers."""
    f = subparsers.add_parser(
        "finetune",
        help="fine-tune the reference GPT for SMS spam (or fit the bag-of-words baseline) and write result rows",
        description="Fine-tune a pretrained GPT checkpoint on the balanced SMS spam split with one strategy and "
        "several seeds; each run writes <out>/runs/<strategy>_seed<seed>.json, a row of <out>/results.csv "
        "and refreshes <out>/summary.md. Each seed runs in a fresh process (clean timing and memory). "
        "Ctrl-C saves the running run's state; --resume continues it.",
    )
    f.add_argument("--strategy", required=True, choices=list(ALL_STRATEGIES))
    f.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    f.add_argument("--checkpoint", default="", help="pretrained GPT safetensors (default: the reference model)")
    f.add_argument("--base", default="", help="instead of --checkpoint: GPT-2 weights from Hugging Face, a hub name "
                   "(gpt2, gpt2-medium, gpt2-large, gpt2-xl; needs the [hf] extra) or a local folder (config.json + model.safetensors)")
    f.add_argument("--epochs", type=int, default=None, help="default: per strategy, see gpt.finetune.DEFAULT_CONFIGS")
    f.add_argument("--lr", type=float, default=None)
    f.add_argument("--batch-size", type=int, default=None)
    f.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay (GPT strategies)")
    f.add_argument("--l2", type=float, default=None, help="L2 penalty (baseline)")
    f.add_argument("--dropout", type=float, default=None, help="dropout inside the transformer")
    f.add_argument("--classifier-dropout", type=float, default=None, help="dropout before the head")
    f.add_argument("--rank", type=int, default=None, help="LoRA rank r (strategy lora)")
    f.add_argument("--alpha", type=float, default=None, help="LoRA lora_alpha; scale = alpha / r (strategy lora)")
    f.add_argument("--use-rslora", action="store_true", default=None, help="rsLoRA: scale = alpha / sqrt(r) (strategy lora)")
    f.add_argument("--use-dora", action="store_true", default=None, help="DoRA: a trained magnitude per output row (strategy lora)")
    f.add_argument("--init-lora-weights", choices=["kaiming", "gaussian", "pissa"], default=None, help="the start of A (and B, W for pissa)")
    f.add_argument("--loraplus-lr-ratio", type=float, default=None, help="LoRA+: B learns at lr x this ratio (e.g. 16)")
    f.add_argument("--target-modules", nargs="+", default=None, help="layers to adapt, e.g. q_proj v_proj, or attn, or mlp (default: all)")
    _data_arguments(f)
    f.add_argument("--fold", type=int, default=None, help="train and test on fold FOLD of gpt.sms.kfold_splits (default: the pinned splits)")
    f.add_argument("--folds", type=int, default=None, help="the number of folds for --fold (default 5)")
    f.add_argument("--device", default="cpu")
    f.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"], help="of the training steps (evaluation: fp32)")
    f.add_argument("--out", default=FINETUNE_OUT, help=f"results folder (default {FINETUNE_OUT}; the committed "
                   "results are replaced only when named here, e.g. --out results/finetune --overwrite)")
    f.add_argument("--resume", action="store_true", help="continue interrupted runs; skip seeds whose rows exist")
    f.add_argument("--overwrite", action="store_true", help="replace existing rows of the same strategy and seed")
    f.add_argument("--in-process", action="store_true", default=None, help=argparse.SUPPRESS)
    f.add_argument("--command-line", default="", help=argparse.SUPPRESS)
    f.set_defaults(func=_cmd_finetune)

    e = subparsers.add_parser(
        "experiment",
        help="the headline experiment: full / last-block / head / LoRA r=1..32 / baseline, 3 seeds each",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    e.add_argument("--suite", choices=["headline", "variants"], default="headline",
                   help="headline: the strategies x ranks above; variants: the LoRA variants ablation (gpt.experiments.ablations, "
                   "into results/lora_variants unless --out)")
    e.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (GPT_PROFILE=ci: 0)")
    e.add_argument("--strategies", nargs="+", default=list(ALL_STRATEGIES), choices=list(ALL_STRATEGIES))
    e.add_argument("--ranks", type=int, nargs="+", default=None, help="LoRA ranks (lora_alpha = 2·r; default 1 2 4 8 16 32, GPT_PROFILE=ci: 8)")
    e.add_argument("--checkpoint", default="", help="pretrained GPT safetensors (default: the reference model)")
    e.add_argument("--base", default="", help="instead of --checkpoint: GPT-2 weights from Hugging Face (gpt2, ... or a local folder)")
    e.add_argument("--epochs", type=int, default=None, help="override every strategy's epochs (quick trials only; GPT_PROFILE=ci: 1)")
    _data_arguments(e)
    e.add_argument("--kfold", type=int, default=None, metavar="K",
                   help="run everything on each of K folds of the whole collection (<out>/fold<i>/), then pool them in <out>/summary.md")
    e.add_argument("--device", default="cpu")
    e.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="of the training steps (auto: bf16 where the CPU or GPU has it natively, else fp32; evaluation: fp32)")
    e.add_argument("--out", default=None, help="results folder (default: a new run folder runs/experiment/<date>-<time>/, "
                   "or the unfinished one of the same plan, which is resumed). Replacing the committed results is "
                   "deliberate: --out results/finetune --overwrite")
    e.add_argument("--against", default=None, help="the results folder to compare with at the end (default: the "
                   "committed results/finetune; '' for none)")
    e.add_argument("--skip-existing", action="store_true", help="keep rows already in results.csv and resume interrupted runs")
    e.add_argument("--overwrite", action="store_true", help="rerun and replace rows already in results.csv")
    e.add_argument("--command-line", default="", help=argparse.SUPPRESS)
    e.set_defaults(func=_cmd_experiment)

    s = subparsers.add_parser(
        "summarize",
        help="rewrite <out>/summary.md from results.csv and the runs' predictions: means, 95 %% intervals, paired verdicts",
    )
    s.add_argument("--out", default=f"results/{COMMITTED}")
    s.add_argument("--against", default="", help="another results folder: add each strategy's paired comparison with the same strategy there")
    s.set_defaults(func=_cmd_summarize)
