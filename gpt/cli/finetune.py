"""The fine-tuning commands: ``python -m gpt finetune`` (one strategy, several seeds), ``experiment``
(the headline experiment, or ``--suite variants``) and ``summarize``; the library behind them is
:mod:`gpt.experiments.runner`.

The flags of a :class:`~gpt.finetune.FinetuneConfig` field are declared with :func:`config_flag`, which
records the field: :func:`configs_from_flags` builds the configs from them, the one place flags become
a config. A run in a child process gets its config as JSON (:func:`gpt.experiments.runner.run_in_child`),
never as flags.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from ..errors import ConfigError
from ..experiments import runner
from ..experiments.ablations import run_variants, variant_runs
from ..experiments.compare import run_recipe, write_kfold_summary
from ..experiments.results import check_results_dir, refresh_summary, strategy_order
from ..experiments.run_folder import RUNS_ROOT, default_run_folder, experiment_plan, splits_of
from ..experiments.runner import (COMMITTED, FINETUNE_OUT, INTERRUPTED, LORA_RANKS, ExperimentConfig, base_sha256, check_base,
                                  check_checkpoint, checkpoint_folder, run_experiment, run_in_child, run_job)
from ..finetune import ALL_STRATEGIES, FinetuneConfig, check_lora_rank, default_config
from ..finetune_config import ONLY_FOR
from ..io.files import check_output, display_path, sha256_file
from ..io.weights import read_checkpoint
from ..model import ATTN_IMPLS
from ..runtime.device import PRECISIONS, pick_device
from ..runtime.profile import get_profile
from ..teaching.reference import reference_path


def config_flag(parser, flags: dict, flag: str, field: str | None = None, **kwargs) -> None:
    """Add ``flag`` to ``parser`` as the :class:`~gpt.finetune.FinetuneConfig` field ``field`` (default: the
    flag's own name), and record it in ``flags`` (field -> flag) for :func:`configs_from_flags`. A flag
    left out is ``None``: the strategy's default stands."""
    field = field or flag.lstrip("-").replace("-", "_")
    flags[field] = flag
    parser.add_argument(flag, dest=field, default=None, **kwargs)


def configs_from_flags(args) -> list[FinetuneConfig]:
    """One config per seed from the command line (the one place flags become a config); every error before any work."""
    if len(set(args.seeds)) != len(args.seeds):
        raise ConfigError(f"--seeds repeats a seed: {args.seeds}")
    overrides = {field: getattr(args, field) for field in args.config_flags if getattr(args, field) is not None}
    for field in overrides:  # name the flag, not the config field, in the message
        if args.strategy not in ONLY_FOR.get(field, ALL_STRATEGIES):
            raise ConfigError(f"{args.config_flags[field]} does not apply to the strategy {args.strategy!r}")
    if args.strategy != "baseline":
        overrides.update(device=args.device, precision=args.precision)
    if args.label:
        overrides["name"] = args.label
    return [default_config(args.strategy, **overrides, seed=s) for s in args.seeds]


def _resume_hint(command: str, flag: str) -> str:
    return command if flag in shlex.split(command) else f"{command} {flag}"


def _command(args) -> str:
    return args.command_line or "python -m gpt " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _cmd_finetune(args) -> int:
    command = _command(args)
    if args.resume and args.overwrite:
        raise ConfigError("--resume keeps the rows already in results.csv and continues interrupted runs, --overwrite reruns "
                          "and replaces them; give one of the two")
    configs = configs_from_flags(args)
    if args.strategy != "baseline":
        pick_device(args.device)  # an unknown or unavailable device is a ConfigError, before any run
        if args.checkpoint:
            check_checkpoint(args.checkpoint)
        if args.base:
            check_base(args.base, args.checkpoint)
        elif args.strategy == "lora":  # the rank against the model's width, before any run (--base: when its model is built)
            ckpt = args.checkpoint or reference_path()
            check_lora_rank(configs[0].r, read_checkpoint(ckpt)[0].n_embd, source=display_path(ckpt))
    recipes = {configs[0].label: run_recipe(configs[0].to_dict(), base_sha256(configs[0], args.checkpoint or None, args.base or None))}
    done = check_results_dir(args.out, [(c.label, c.seed) for c in configs], overwrite=args.overwrite or args.resume, recipes=recipes)
    if args.resume:
        skipped = [c for c in configs if (c.label, c.seed) in done and not checkpoint_folder(args.out, c).exists()]
        for c in skipped:
            print(f"{c.label} seed {c.seed}: already in {args.out}/results.csv, skipped (--resume)")
        configs = [c for c in configs if c not in skipped]
    in_process = args.in_process or (len(configs) == 1 and args.in_process is None)
    for c in configs:
        job = runner.finetune_job(c, args.out, args.checkpoint, command, resume=args.resume, overwrite=args.overwrite, base=args.base)
        # Several seeds: one fresh process each, so that wall time and peak memory do not depend on the runs before.
        rc = run_job(job) if in_process else run_in_child(job)
        if rc:
            return rc
    return 0


def _cmd_finetune_job(args) -> int:
    """``python -m gpt finetune-job``: one run whose job (:func:`gpt.experiments.runner.finetune_job`) comes as JSON on stdin."""
    return run_job(json.load(sys.stdin))


def _folds_of(out: Path) -> int | None:
    """K when ``out`` is a k-fold experiment's folder (``fold0/`` … ``fold<K-1>/``), else None."""
    k = 0
    while (out / f"fold{k}" / "results.csv").is_file():
        k += 1
    return k or None



def _cmd_summarize(args) -> int:
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
        print(f"wrote {write_kfold_summary(out, folds, order=strategy_order)}")
        return 0
    path = refresh_summary(out, splits_of(out), against)
    print(f"wrote {path}")
    return 0



def _cmd_experiment(args) -> int:
    command = _command(args)
    _apply_profile(args, get_profile())
    if args.suite == "variants":
        return _cmd_variants(args, command)
    config = ExperimentConfig(seeds=tuple(args.seeds), strategies=tuple(args.strategies), ranks=tuple(args.ranks), checkpoint=args.checkpoint,
                              base=args.base, epochs=args.epochs, device=args.device, precision=args.precision,
                              train_split=args.train_split, class_weight=args.class_weight, kfold=args.kfold)
    try:
        run_experiment(args.out, config, skip_existing=args.skip_existing, overwrite=args.overwrite, command=command, against=args.against)
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
    defaults = {"strategies": list(ALL_STRATEGIES), "ranks": list(LORA_RANKS), "base": "", "kfold": None, "train_split": None,
                "class_weight": None, "against": None, "precision": "auto"}
    changed = [k for k, v in defaults.items() if getattr(args, k, v) != v]
    if changed:
        raise ConfigError(f"--suite variants runs its own configurations; --{changed[0].replace('_', '-')} does not apply to it")
    out = args.out
    if out is None:
        ckpt = args.checkpoint or reference_path()
        plan = experiment_plan(variant_runs(), args.seeds, sha256_file(ckpt), epochs=args.epochs, device=args.device)
        out, resumed = default_run_folder(plan, RUNS_ROOT / "variants")
        args.skip_existing = not args.overwrite  # its own folder: resume what is there, unless asked to rerun
        print(f"experiment --suite variants: {'resuming the unfinished run in' if resumed else 'a new run folder'} {out}")
    try:
        path = run_variants(out, args.seeds, args.checkpoint, args.epochs, args.skip_existing, command, args.device, args.overwrite)
    except KeyboardInterrupt:
        print(f"\nexperiment interrupted; resume with: {_resume_hint(command, '--skip-existing')}", file=sys.stderr)
        return INTERRUPTED
    print(f"wrote {path}")
    return 0


def _data_arguments(parser, flags: dict) -> None:
    config_flag(parser, flags, "--train-split", choices=["train", "train_natural"],
                help="train on the balanced train split (default) or on every message outside val/test (gpt.experiments.splits.natural_train)")
    config_flag(parser, flags, "--class-weight", choices=["balanced"],
                help="weight each class's loss by n / (2 n_class) of the training set (default: unweighted)")


def register(subparsers) -> None:
    """Add ``finetune``, ``experiment`` and ``summarize`` (and the internal ``finetune-job``) to ``python -m gpt``."""
    _register_finetune(subparsers)
    _register_experiment(subparsers)
    s = subparsers.add_parser(
        "summarize",
        help="rewrite <out>/summary.md from results.csv and the runs' predictions: means, 95 %% intervals, paired verdicts",
    )
    s.add_argument("--out", default=f"results/{COMMITTED}")
    s.add_argument("--against", default="", help="another results folder: add each strategy's paired comparison with the same strategy there")
    s.set_defaults(func=_cmd_summarize)


def _register_finetune(subparsers) -> None:
    f = subparsers.add_parser(
        "finetune",
        help="fine-tune the reference GPT for SMS spam (or fit the bag-of-words baseline) and write result rows",
        description="Fine-tune a pretrained GPT checkpoint on the balanced SMS spam split with one strategy and "
        "several seeds; each run writes <out>/runs/<strategy>_seed<seed>.json, a row of <out>/results.csv "
        "and refreshes <out>/summary.md. Each seed runs in a fresh process (clean timing and memory). "
        "Ctrl-C saves the running run's state; --resume continues it.",
    )
    flags: dict[str, str] = {}  # FinetuneConfig field -> its flag, as config_flag adds them
    f.add_argument("--strategy", required=True, choices=list(ALL_STRATEGIES))
    f.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    f.add_argument("--checkpoint", default="", help="pretrained GPT safetensors (default: the reference model)")
    f.add_argument("--base", default="", help="instead of --checkpoint: GPT-2 weights from Hugging Face, a hub name "
                   "(gpt2, gpt2-medium, gpt2-large, gpt2-xl; needs the [hf] extra) or a local folder (config.json + model.safetensors)")
    config_flag(f, flags, "--epochs", type=int, help="default: per strategy, see gpt.finetune.DEFAULT_CONFIGS")
    config_flag(f, flags, "--lr", type=float)
    config_flag(f, flags, "--batch-size", type=int)
    config_flag(f, flags, "--weight-decay", type=float, help="AdamW weight decay (GPT strategies)")
    config_flag(f, flags, "--l2", type=float, help="L2 penalty (baseline)")
    config_flag(f, flags, "--dropout", type=float, help="dropout inside the transformer")
    config_flag(f, flags, "--classifier-dropout", type=float, help="dropout before the head")
    config_flag(f, flags, "--pad-to-multiple-of", type=int, help="pad each batch to a multiple of this many tokens (default 16)")
    config_flag(f, flags, "--attn-impl", choices=list(ATTN_IMPLS), help="attention kernel: auto (default), sdpa or explicit (the same function, computed differently)")
    config_flag(f, flags, "--rank", "r", type=int, help="LoRA rank r (strategy lora)")
    config_flag(f, flags, "--alpha", "lora_alpha", type=float, help="LoRA lora_alpha; scale = alpha / r (strategy lora)")
    config_flag(f, flags, "--use-rslora", action="store_true", help="rsLoRA: scale = alpha / sqrt(r) (strategy lora)")
    config_flag(f, flags, "--use-dora", action="store_true", help="DoRA: a trained magnitude per output row (strategy lora)")
    config_flag(f, flags, "--init-lora-weights", choices=["kaiming", "gaussian", "pissa"], help="the start of A (and B, W for pissa)")
    config_flag(f, flags, "--loraplus-lr-ratio", type=float, help="LoRA+: B learns at lr x this ratio (e.g. 16)")
    config_flag(f, flags, "--target-modules", nargs="+", help="layers to adapt, e.g. q_proj v_proj, or attn, or mlp (default: all)")
    _data_arguments(f, flags)
    config_flag(f, flags, "--fold", type=int, help="train and test on fold FOLD of gpt.experiments.splits.kfold_splits (default: the pinned splits)")
    config_flag(f, flags, "--folds", type=int, help="the number of folds for --fold (default 5)")
    f.add_argument("--device", default="cpu")
    f.add_argument("--precision", default="auto", choices=list(PRECISIONS), help="of the training steps (evaluation: fp32)")
    f.add_argument("--out", default=FINETUNE_OUT, help=f"results folder (default {FINETUNE_OUT}; the committed "
                   "results are replaced only when named here, e.g. --out results/finetune --overwrite)")
    f.add_argument("--label", default="", help="this configuration's name in results.csv and summary.md (default: the strategy's, "
                   "e.g. lora-r8). A results folder keeps one configuration per label: a run whose settings differ from the "
                   "rows already under its label is refused; give it a --label of its own")
    f.add_argument("--resume", action="store_true", help="continue interrupted runs; skip seeds whose rows exist (not with --overwrite)")
    f.add_argument("--overwrite", action="store_true", help="replace existing rows of the same label and seed (not with --resume)")
    f.add_argument("--in-process", action="store_true", default=None, help=argparse.SUPPRESS)
    f.add_argument("--command-line", default="", help=argparse.SUPPRESS)
    f.set_defaults(func=_cmd_finetune, config_flags=flags)

    j = subparsers.add_parser("finetune-job", help="(internal) one fine-tuning run, its job as JSON on stdin")
    j.set_defaults(func=_cmd_finetune_job)


def _register_experiment(subparsers) -> None:
    e = subparsers.add_parser(
        "experiment",
        help="the headline experiment: full / last-block / head / LoRA r=1..32 / baseline, 3 seeds each",
        description=runner.__doc__.split("\n\n")[1],
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
    _data_arguments(e, {})
    e.add_argument("--kfold", type=int, default=None, metavar="K",
                   help="run everything on each of K folds of the whole collection (<out>/fold<i>/), then pool them in <out>/summary.md")
    e.add_argument("--device", default="cpu")
    e.add_argument("--precision", default="auto", choices=list(PRECISIONS),
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
