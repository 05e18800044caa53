"""The fine-tuning runner behind ``python -m gpt finetune`` (one strategy, several seeds) and
``python -m gpt experiment`` (the course's headline experiment: what LoRA buys, measured); the
commands themselves are in :mod:`gpt.cli.finetune`.

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

import contextlib
import dataclasses
import json
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..io.tokenizer_files import check_vocabulary
from ..io.files import sha256_file
from ..errors import ConfigError
from ..finetune import ALL_STRATEGIES, FinetuneConfig, TrainingInterrupted, build_model, default_config, finetune
from ..io.files import display_path
from ..io.hf import resolve_pretrained
from ..io.lock import output_lock
from ..io.run_names import lora_label
from ..model import count_parameters
from ..runtime.device import pick_device
from ..teaching.course import results_dir
from ..teaching.reference import machine_description, reference_path, source_commit
from ..tokenizer import course_tokenizer
from ..io.weights import read_checkpoint
from .baseline import train_baseline
from .compare import run_recipe, write_kfold_summary
from .results import (check_one_recipe_per_label, check_results_dir, plot_accuracy_vs_params, refresh_summary, result_row, strategy_order, task_storage_bytes,
                      write_result)
from .run_folder import Progress, default_run_folder, experiment_plan, finished_row, print_comparison, write_plan
from .splits import run_splits

__all__ = ["ExperimentConfig", "experiment_runs", "run_experiment", "run_finetune", "finetune_job", "run_job", "run_in_child", "LORA_RANKS",
           "LORA_ALPHA_PER_RANK"]

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

    The run holds the lock of its (label, seed) in ``out`` (:func:`run_lock`) from start to end: a second
    process running the same label and seed into the same folder is refused, naming this one. Runs of
    other labels or seeds may write into the same folder at the same time. A label keeps one
    configuration (:func:`gpt.experiments.results.check_one_recipe_per_label`).
    """
    with run_lock(out, config, command):
        row = _run_locked(config, Path(out), checkpoint, command, resume, overwrite, progress, base)
    ck_parent = checkpoint_folder(out, config).parent
    with contextlib.suppress(OSError):  # another run may be creating its checkpoint there right now
        if ck_parent.is_dir() and not any(ck_parent.iterdir()):
            ck_parent.rmdir()
    return row


def run_lock(out: str | Path, config: FinetuneConfig, command: str = ""):
    """The lock a run holds while it runs: that of ``<out>/runs/<label>_seed<seed>`` (:func:`gpt.io.lock.output_lock`)."""
    return output_lock(Path(out) / "runs" / f"{config.label}_seed{config.seed}", command=command or None,
                       what=f"{config.label} seed {config.seed} in {out}")


def base_sha256(config: FinetuneConfig, checkpoint=None, base: str | None = None) -> str:
    """The sha256 of the weights a run starts from ("" for the baseline, which starts from none)."""
    if config.strategy == "baseline":
        return ""
    return sha256_file(check_base(base) if base else Path(checkpoint) if checkpoint else reference_path())


def _run_locked(config: FinetuneConfig, out: Path, checkpoint, command: str, resume: bool, overwrite: bool, progress: bool,
                base: str | None) -> dict:
    label = config.label
    base_sha = base_sha256(config, checkpoint, base)
    check_results_dir(out, [(label, config.seed)], overwrite=overwrite, recipes={label: run_recipe(config.to_dict(), base_sha)})
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
        print(f"{label}: {count_parameters(model, trainable_only=True):,} of {count_parameters(model):,} parameters train (seed {config.seed})")
        result = finetune(model, splits, config, progress=progress, checkpoint_dir=ck_dir, resume=resume and ck_dir.exists())
        extra.update(checkpoint=str(base) if base else display_path(ckpt), checkpoint_sha256=base_sha,
                     stored_bytes=task_storage_bytes(model, ckpt))
    row = result_row(result, extra)
    write_result(out, row, result, overwrite=True)  # checked above; a resumed run replaces nothing else
    refresh_summary(out, splits)  # with the intervals and paired comparisons of every run so far
    shutil.rmtree(ck_dir, ignore_errors=True)
    print(
        f"{label} seed {config.seed}: best epoch {row['best_epoch']}, balanced test accuracy {row['test_accuracy']:.4f}, "
        f"F1 {row['test_f1']:.4f}; natural test accuracy {row['natural_accuracy']:.4f}, F1 {row['natural_f1']:.4f}; "
        f"{row['wall_seconds']:.1f} s"
    )
    return row


# ---------------------------------------------------------------------------------------------
# Checks before any run, and a run in a process of its own


def check_checkpoint(path: str) -> None:
    """A pretrained GPT checkpoint that loads and matches the course tokenizer, checked before any run."""
    config, _, meta = read_checkpoint(path)
    check_vocabulary(config, course_tokenizer(), meta.get("tokenizer_fingerprint"), source=str(path))


def check_base(base: str, checkpoint: str = "") -> Path:
    """A Hugging Face GPT-2 base (hub name or folder) whose files are there (fetched now if need be),
    checked before any run; returns its weights file."""
    if checkpoint:
        raise ConfigError("give either --checkpoint (a course checkpoint) or --base (GPT-2 weights from Hugging Face), not both")
    return resolve_pretrained(base).main_weights


def finetune_job(config: FinetuneConfig, out: str | Path, checkpoint: str | Path | None = None, command: str = "", *,
                 resume: bool = False, overwrite: bool = False, base: str | None = None) -> dict:
    """One :func:`run_finetune` call as plain data (JSON): what a child process gets. The config
    travels whole (:meth:`FinetuneConfig.to_dict`), so every field, present or future, reaches the child."""
    return {"config": config.to_dict(), "out": str(out), "checkpoint": str(checkpoint or ""), "command": command,
            "resume": resume, "overwrite": overwrite, "base": base or ""}


def run_job(job: dict) -> int:
    """Run a :func:`finetune_job` in this process; returns the exit status (130: interrupted, its state saved)."""
    config = FinetuneConfig.from_dict(job["config"])
    try:
        run_finetune(config, job["out"], job["checkpoint"] or None, job["command"], resume=job["resume"], overwrite=job["overwrite"],
                     base=job["base"] or None)
    except TrainingInterrupted as e:
        hint = job["command"] if "--resume" in shlex.split(job["command"]) else f"{job['command']} --resume"
        print(f"\n{e}\nresume with: {hint}", file=sys.stderr)
        return INTERRUPTED
    return 0


def run_in_child(job: dict) -> int:
    """Run a :func:`finetune_job` in a fresh Python process (``python -m gpt finetune-job``, the job as JSON on
    its standard input), so that its wall time and peak memory do not depend on the runs before it.
    Ctrl-C reaches the child too, which saves its state first; returns the child's exit status."""
    proc = subprocess.Popen([sys.executable, "-m", "gpt", "finetune-job"], stdin=subprocess.PIPE, text=True)
    proc.stdin.write(json.dumps(job))
    proc.stdin.close()
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue  # the child got the same Ctrl-C: wait until it has saved and exited


# ---------------------------------------------------------------------------------------------
# python -m gpt experiment


@dataclass(frozen=True)
class ExperimentConfig:
    """What an experiment runs: configurations × seeds, and the settings every run shares.

    ``runs``: ``(label, FinetuneConfig overrides)`` configurations instead of ``strategies`` × ``ranks``
    (the LoRA variants suite, :func:`gpt.experiments.ablations.variant_runs`). ``epochs`` overrides every
    GPT strategy's default (quick trials; the recorded experiment uses the defaults). ``base`` fine-tunes
    GPT-2's weights from Hugging Face instead of ``checkpoint``. ``train_split`` / ``class_weight`` /
    ``fold`` / ``folds`` set those :class:`~gpt.finetune.FinetuneConfig` fields of every run; ``kfold=K``
    runs the whole experiment on each of K folds.
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    strategies: tuple[str, ...] = ALL_STRATEGIES
    ranks: tuple[int, ...] = LORA_RANKS
    runs: tuple[tuple[str, dict], ...] | None = None
    checkpoint: str = ""
    base: str = ""
    epochs: int | None = None
    device: str = "cpu"
    precision: str = "auto"
    train_split: str | None = None
    class_weight: str | None = None
    kfold: int | None = None
    fold: int | None = None
    folds: int = 5

    def configurations(self) -> list[tuple[str, dict]]:
        return [(label, dict(o)) for label, o in self.runs] if self.runs is not None else experiment_runs(self.strategies, self.ranks)

    def shared(self) -> dict:
        """The FinetuneConfig fields every run of the plan gets (GPT strategies: also device, precision, epochs)."""
        return {k: v for k, v in (("train_split", self.train_split), ("class_weight", self.class_weight)) if v is not None} | (
            {"fold": self.fold, "folds": self.folds} if self.fold is not None else {})

    def run_config(self, overrides: dict, seed: int) -> FinetuneConfig:
        """The :class:`~gpt.finetune.FinetuneConfig` of one run of the plan."""
        overrides = dict(overrides)
        strategy = overrides.pop("strategy")
        fields = {**self.shared(), **overrides, "seed": seed}
        if strategy != "baseline":
            fields.update(device=self.device, precision=self.precision)
            if self.epochs is not None:
                fields["epochs"] = self.epochs
        return default_config(strategy, **fields)

    def check(self) -> None:
        """Every setting, before any run: a bad one is a ConfigError naming it."""
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must be distinct and at least one, got {list(self.seeds)}")
        if self.kfold is not None:
            default_config("full", folds=self.kfold, fold=0)  # checks K
        for _, overrides in self.configurations():
            self.run_config(overrides, self.seeds[0])
        if self.checkpoint:
            check_checkpoint(self.checkpoint)
        pick_device(self.device)


def experiment_runs(strategies=ALL_STRATEGIES, ranks=LORA_RANKS) -> list[tuple[str, dict]]:
    """``(result label, FinetuneConfig overrides)`` of every configuration the experiment trains."""
    runs = []
    for s in strategies:
        if s == "lora":
            runs += [(lora_label(r), {"strategy": "lora", "r": r, "lora_alpha": LORA_ALPHA_PER_RANK * r}) for r in ranks]
        elif s in ALL_STRATEGIES:
            runs.append((s, {"strategy": s}))
        else:
            raise ConfigError(f"unknown strategy {s!r}; choose from {list(ALL_STRATEGIES)}")
    return sorted(runs, key=lambda r: strategy_order(r[0]))


def _rows_to_keep(out: Path, checkpoint_sha: str) -> set[tuple[str, int]]:
    """Rows already in ``results.csv`` made from this checkpoint (the baseline uses none)."""
    csv = out / "results.csv"
    if not csv.exists():
        return set()
    t = pd.read_csv(csv)
    keep = (t["strategy"] == "baseline") | (t["checkpoint_sha256"] == checkpoint_sha)
    return {(s, int(seed)) for s, seed in zip(t.loc[keep, "strategy"], t.loc[keep, "seed"])}


def run_experiment(out: str | Path | None = None, config: ExperimentConfig | None = None, *, skip_existing: bool = False,
                   overwrite: bool = False, command: str = "", against: str | Path | None = None, **settings) -> Path:
    """Run every configuration of ``config`` (an :class:`ExperimentConfig`; ``settings`` change its fields)
    for every seed, each in a process of its own; then write the summary and the plot, and compare with
    the committed results. Returns the path of ``results.csv``.

    ``out=None``: a run folder of its own under ``runs/experiment/`` (:func:`default_run_folder`): the
    unfinished one with the same plan is resumed, else a new one is made. An ``out`` given explicitly
    is a results folder like the committed ones: existing rows there are an error before any run unless
    ``skip_existing`` (keep rows made from the same checkpoint, resume interrupted runs) or ``overwrite``.
    ``against``: the results folder the end compares with (:func:`gpt.experiments.compare.reproduction_table`;
    default the committed ``results/finetune`` where there is one, ``""`` for none).

    With ``kfold=K`` the whole experiment runs on each fold of :func:`gpt.experiments.splits.kfold_splits` in turn,
    into ``<out>/fold<i>/`` (each a results folder of its own), and ``<out>/summary.md`` pools the
    folds' predictions: every message of the collection is then tested once
    (:func:`gpt.experiments.compare.kfold_markdown`). Returns ``<out>/summary.md`` in that case.
    """
    if skip_existing and overwrite:
        raise ConfigError("--skip-existing keeps the rows already in results.csv and --overwrite reruns and replaces them; "
                          "give one of the two")
    config = dataclasses.replace(config or ExperimentConfig(), **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})
    config.check()
    ckpt = check_base(config.base, config.checkpoint) if config.base else Path(config.checkpoint or reference_path())
    runs = config.configurations()
    plan = experiment_plan(runs, config.seeds, sha256_file(ckpt), epochs=config.epochs, device=config.device,
                           train_split=config.train_split, class_weight=config.class_weight, fold=config.fold, folds=config.folds,
                           kfold=config.kfold, base=config.base, precision=config.precision)
    command = command or "python -m gpt experiment"
    if out is None:
        out, resumed = default_run_folder(plan)
        skip_existing = True  # its own folder: resume what is there
        print(f"experiment: {'resuming the unfinished run in' if resumed else 'a new run folder'} {out}")
    out = Path(out)
    with output_lock(out, command=command, what=f"the experiment folder {out}"):  # one experiment per folder at a time
        return _run_experiment_locked(out, config, plan, command, skip_existing, overwrite, against)


def _run_experiment_locked(out: Path, config: ExperimentConfig, plan: dict, command: str, skip_existing: bool, overwrite: bool,
                           against) -> Path:
    if config.kfold is not None:
        return _run_folds(out, config, plan, command, skip_existing, overwrite)
    reference = _reference_for(against, out)  # a bad --against is an error before any run
    _run_all(out, config, plan, command, skip_existing, overwrite, reference)
    custom = config.runs is not None
    if (out / "results.csv").exists():
        refresh_summary(out, run_splits(fold=config.fold, folds=config.folds))
        if not custom:
            plot_accuracy_vs_params(out / "results.csv", out / "accuracy_vs_params.png")
    write_plan(out, plan, command, finished=True)
    print(f"\nexperiment done: {out / 'summary.md'}" + ("" if custom else f", {out / 'accuracy_vs_params.png'}"))
    if reference is not None and not custom and config.fold is None and config.train_split is None and config.class_weight is None:
        print_comparison(out, reference)
    return out / "results.csv"


def _run_folds(out: Path, config: ExperimentConfig, plan: dict, command: str, skip_existing: bool, overwrite: bool) -> Path:
    """``kfold=K``: the experiment on each fold into ``<out>/fold<i>/``, then the pooled ``<out>/summary.md``."""
    out.mkdir(parents=True, exist_ok=True)
    write_plan(out, plan, command)
    for i in range(config.kfold):
        print(f"\n=== fold {i} of {config.kfold} ===", flush=True)
        fold = dataclasses.replace(config, fold=i, kfold=None, folds=config.kfold)
        run_experiment(out / f"fold{i}", fold, skip_existing=skip_existing, overwrite=overwrite, command=command, against="")
    write_plan(out, plan, command, finished=True)
    return write_kfold_summary(out, config.kfold, order=strategy_order)


def _reference_for(against: str | Path | None, out: Path) -> Path | None:
    """The folder to compare with: ``against``, or the committed results/finetune; None when there is
    none, or it is ``out`` itself (``--out results/finetune --overwrite`` replaces it)."""
    if against == "":
        return None
    ref = Path(against) if against is not None else results_dir(COMMITTED)
    if not (ref / "runs").is_dir():
        if against is not None:
            raise ConfigError(f"--against {ref}: it holds no runs/ folder of fine-tuning runs")
        return None
    if ref.resolve() == out.resolve():
        return None
    return ref


def _run_all(out: Path, config: ExperimentConfig, plan: dict, command: str, skip_existing: bool, overwrite: bool,
             reference: Path | None) -> None:
    """Every run of the plan not yet in ``out``, each in a fresh process, with the progress lines."""
    runs, seeds = config.configurations(), config.seeds
    pairs = [(label, seed) for label, _ in runs for seed in seeds]
    existing = check_results_dir(out, pairs, overwrite=overwrite or skip_existing)
    done = _rows_to_keep(out, plan["checkpoint_sha256"]) if skip_existing else set()
    replaced = set(pairs) if overwrite else (existing & set(pairs)) - done  # skip_existing: rows of another checkpoint are rerun
    recipes = {label: run_recipe(config.run_config(overrides, seeds[0]).to_dict(),
                                 plan["checkpoint_sha256"] if overrides["strategy"] != "baseline" else "") for label, overrides in runs}
    check_one_recipe_per_label(out, recipes, replaced)
    todo = [(label, overrides, seed) for label, overrides in runs for seed in seeds if (label, seed) not in done]
    out.mkdir(parents=True, exist_ok=True)
    write_plan(out, plan, command)
    print(f"experiment: {len(runs)} configurations x {len(seeds)} seeds = {len(pairs)} runs, {len(pairs) - len(todo)} already done; "
          f"results in {out}", flush=True)
    progress = Progress(todo, len(pairs), reference)
    for label, overrides, seed in todo:
        progress.start(label, seed)
        t0 = time.perf_counter()
        job = finetune_job(config.run_config(overrides, seed), out, config.checkpoint, command, resume=skip_existing,
                           overwrite=overwrite or (label, seed) in existing, base=config.base)  # a row from another checkpoint is replaced
        rc = _call_child(job)
        if rc == INTERRUPTED:
            raise KeyboardInterrupt
        if rc:
            raise RuntimeError(f"the run {label} seed {seed} failed (exit code {rc}); run the same command again to resume")
        progress.finish(label, seed, time.perf_counter() - t0, finished_row(out, label, seed))


_call_child = run_in_child  # the experiment's way to start a run (a test replaces it)
