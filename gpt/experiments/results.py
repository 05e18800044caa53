"""Results files of fine-tuning runs: one row per run in ``results.csv``, the whole run as JSON,
and ``summary.md`` (mean ± std over seeds per strategy).

:func:`check_results_dir` is called before any training: a results folder that is a file, holds a
``results.csv`` of another kind, or already holds a row for a run about to start is refused (unless
the caller allows overwriting), so a finished run is never thrown away because its results cannot
be written. :func:`write_result` writes every file atomically.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn as nn
from safetensors.torch import save_file

from ..classifier import STRATEGIES
from ..errors import ConfigError, OutputExistsError
from ..finetune import FinetuneResult
from ..io.adapters import save_adapter
from ..io.files import OutputError, atomic_write_text, check_output
from ..io.lock import output_lock
from ..lora.layer import lora_layers
from .compare import against_markdown, comparison_markdown, recipe_difference, run_recipe


RESULT_COLUMNS = [
    "strategy", "seed", "test_accuracy", "test_precision", "test_recall", "test_f1",
    "natural_accuracy", "natural_precision", "natural_recall", "natural_f1", "val_accuracy", "best_epoch",
    "trainable_params", "total_params", "wall_seconds", "train_seconds", "seconds_per_epoch", "seconds_per_step",
    "peak_memory_bytes", "peak_memory_method", "optimizer_state_bytes", "gradient_bytes", "activation_bytes", "stored_bytes",
    "epochs", "lr", "batch_size", "weight_decay", "l2", "dropout", "classifier_dropout", "r", "lora_alpha",
    "checkpoint", "checkpoint_sha256", "device", "precision", "threads", "machine", "torch", "date", "command", "resumed",
    "commit", "load_1min",
]


def result_row(result: FinetuneResult, extra: dict | None = None) -> dict:
    """One flat row (the :data:`RESULT_COLUMNS`) of a :func:`~gpt.finetune.finetune` or
    :func:`~gpt.experiments.baseline.train_baseline` result; ``extra`` adds the columns the result cannot know
    (command, machine, checkpoint and its sha256, stored bytes)."""
    m, c = result.metrics, result.config
    row = {
        "strategy": c.label,
        "seed": c.seed,
        "val_accuracy": m["val"]["accuracy"],
        "best_epoch": result.best_epoch,
        "trainable_params": result.trainable_params,
        "total_params": result.total_params,
        "wall_seconds": round(result.wall_seconds, 2),
        "train_seconds": round(result.train_seconds, 2),
        "seconds_per_epoch": round(result.seconds_per_epoch, 3),
        "seconds_per_step": round(result.seconds_per_step, 5) if result.seconds_per_step is not None else None,
        "peak_memory_bytes": result.peak_memory_bytes,
        "peak_memory_method": result.peak_memory_method,
        "optimizer_state_bytes": result.optimizer_state_bytes,
        "gradient_bytes": result.gradient_bytes,
        "activation_bytes": result.activation_bytes,
        "epochs": c.epochs,
        "lr": c.lr,
        "batch_size": c.batch_size,
        "device": result.device,
        "precision": result.precision,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "resumed": result.resumed,
        # how busy the machine was at the end of the run (1-minute load average; the run itself adds about
        # its thread count): read the times of a row with a high load as slowed by other work
        "load_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    if c.strategy == "baseline":
        row["l2"] = c.l2
    else:
        row.update(weight_decay=c.weight_decay, dropout=c.dropout, classifier_dropout=c.classifier_dropout)
    if c.strategy == "lora":
        row.update(r=c.r, lora_alpha=c.lora_alpha)
    for split, prefix in (("test", "test"), ("test_natural", "natural")):
        if split in m:
            for k in ("accuracy", "precision", "recall", "f1"):
                row[f"{prefix}_{k}"] = m[split][k]
    row.update(extra or {})
    return {col: row.get(col) for col in RESULT_COLUMNS}


def _read_table(csv_path: Path):
    try:
        table = pd.read_csv(csv_path)
    except (OSError, ValueError) as e:  # pandas' parser errors are ValueErrors
        raise OutputError(f"{csv_path} exists but is not a readable results table ({e}); move it away or choose another --out") from e
    missing = [c for c in ("strategy", "seed") if c not in table.columns]
    if missing:
        raise OutputError(
            f"{csv_path} is not a results table of this package (no column {missing[0]!r}); move it away or choose another --out"
        )
    return table


def check_results_dir(out_dir: str | os.PathLike, runs=(), overwrite: bool = False, recipes: dict | None = None) -> set[tuple[str, int]]:
    """Check before any training that results can be written to ``out_dir``.

    ``runs``: the (strategy label, seed) pairs about to run. Refuses (:class:`~gpt.errors.OutputExistsError`)
    a pair that already has a row unless ``overwrite``; refuses (:class:`~gpt.io.files.OutputError`) a
    file where the folder should be, an unwritable folder, or a ``results.csv`` that is not a results
    table. ``recipes``: ``{label: recipe}`` (:func:`gpt.experiments.compare.run_recipe`) of the runs about
    to start, checked by :func:`check_one_recipe_per_label` (the rows ``overwrite`` replaces excepted).
    Returns the pairs that already have rows.
    """
    out = check_output(out_dir, kind="dir", overwrite=True)
    csv_path = out / "results.csv"
    if csv_path.is_dir():
        raise OutputError(f"{csv_path} is a folder; choose another --out")
    done: set[tuple[str, int]] = set()
    if csv_path.exists():
        table = _read_table(csv_path)
        done = {(str(s), int(seed)) for s, seed in zip(table["strategy"], table["seed"])}
    clash = sorted(set((str(s), int(seed)) for s, seed in runs) & done)
    if clash and not overwrite:
        shown = ", ".join(f"{s} seed {seed}" for s, seed in clash[:4])
        raise OutputExistsError(
            f"{csv_path} already has results for {shown}{' ...' if len(clash) > 4 else ''}; pass --overwrite to replace them, "
            "or choose another --out"
        )
    if recipes:
        check_one_recipe_per_label(out, recipes, replaced=set(runs) if overwrite else set())
    return done


def check_one_recipe_per_label(out_dir: str | os.PathLike, recipes: dict, replaced=frozenset()) -> None:
    """One configuration per label: refuse (:class:`~gpt.errors.ConfigError`) a run whose recipe
    (``recipes[label]``, :func:`gpt.experiments.compare.run_recipe`) differs from that of runs already
    under its label in ``out_dir`` (``runs/<label>_seed<seed>.json``), except the (label, seed) pairs
    about to be ``replaced``. The seeds of a label are averaged in ``summary.md``: they must be seeds of
    one configuration. How a run computes (device, precision, padding, attention: ``NOT_RECIPE``) may differ."""
    out = Path(out_dir)
    for label, recipe in recipes.items():
        differing = {}
        for path in sorted((out / "runs").glob(f"{glob.escape(label)}_seed*.json")):
            try:
                doc = json.loads(path.read_text())
                row = doc["row"]
                seed = int(row["seed"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if row.get("strategy") != label or (label, seed) in replaced:
                continue
            diff = recipe_difference(run_recipe(doc.get("config", {}), row.get("checkpoint_sha256")), recipe)
            if diff:
                differing[seed] = diff
        if differing:
            seeds = sorted(differing)
            raise ConfigError(
                f"{out} already holds {label} seed{'s' if len(seeds) > 1 else ''} {' '.join(map(str, seeds))} with another "
                f"configuration ({differing[seeds[0]]}, theirs vs this run's); a label names one configuration, so that its "
                f"seeds can be averaged. Give this run a label of its own (finetune --label NAME), write it to another --out, "
                f"or rerun every seed of {label} with --overwrite"
            )


def write_result(out_dir: str | os.PathLike, row: dict, result: FinetuneResult | None = None, overwrite: bool = False) -> Path:
    """Add ``row`` to ``<out_dir>/results.csv``, write the full ``result`` (history and metrics, no model)
    as ``<out_dir>/runs/<strategy>_seed<seed>.json``, and refresh ``<out_dir>/summary.md``.

    A row of the same strategy and seed is replaced only with ``overwrite``. Every file is written
    atomically, and ``results.csv`` is read, changed and rewritten under its lock (:func:`results_lock`),
    so that runs writing into one folder in parallel all keep their rows. Returns the path of ``results.csv``."""
    with results_lock(out_dir):
        return _write_result(Path(out_dir), row, result, overwrite)


RESULTS_LOCK_WAIT = 600.0  # seconds a run waits for another one to finish writing results.csv


def results_lock(out_dir: str | os.PathLike):
    """The lock of ``<out_dir>/results.csv`` (:func:`gpt.io.lock.output_lock`), waited for up to
    :data:`RESULTS_LOCK_WAIT` seconds: held while a run reads, changes and rewrites it and ``summary.md``."""
    return output_lock(Path(out_dir) / "results.csv", wait=RESULTS_LOCK_WAIT)


def _write_result(out: Path, row: dict, result: FinetuneResult | None, overwrite: bool) -> Path:
    check_results_dir(out, [(row["strategy"], row["seed"])], overwrite)
    csv_path = out / "results.csv"
    if result is not None:
        doc = result.to_dict()
        doc["row"] = row
        atomic_write_text(out / "runs" / f"{row['strategy']}_seed{row['seed']}.json", json.dumps(doc, indent=1) + "\n")
    table = _read_table(csv_path) if csv_path.exists() else pd.DataFrame(columns=RESULT_COLUMNS)
    table = table[~((table["strategy"] == row["strategy"]) & (table["seed"] == row["seed"]))]
    table = pd.concat([table, pd.DataFrame([row])], ignore_index=True) if len(table) else pd.DataFrame([row])
    table = table.sort_values(["strategy", "seed"], key=lambda c: c.map(strategy_order) if c.name == "strategy" else c)
    atomic_write_text(csv_path, table.to_csv(index=False, lineterminator="\n"))
    atomic_write_text(out / "summary.md", summary_markdown(table))
    return csv_path


def strategy_order(name: str) -> int:
    """Sort key of a results row's strategy: full, last-block, head, lora-r1, lora-r2, ..., baseline."""
    order = {s: i for i, s in enumerate(STRATEGIES)}
    if name in order:
        return order[name]
    if isinstance(name, str) and name.startswith("lora-r") and name[6:].isdigit():
        return 10 + int(name[6:])
    return 10_000 if name == "baseline" else 5_000



def task_storage_bytes(model: nn.Module, base_checkpoint=None) -> int:
    """Bytes that must be stored per task to rebuild ``model`` from the shared base checkpoint.

    For a LoRA model: the adapter folder written by :func:`gpt.io.adapters.save_adapter` (factors, the
    trainable head and the JSON config). Otherwise: a safetensors file of the trainable parameters
    (for full fine-tuning that is the whole model). Measured by writing the files to a temporary folder.
    """



    with tempfile.TemporaryDirectory() as tmp:
        if any(True for _ in lora_layers(model)):
            folder = save_adapter(model, Path(tmp) / "adapter", base_checkpoint=base_checkpoint)
            return sum(f.stat().st_size for f in folder.iterdir())
        tensors = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
        save_file(tensors, str(Path(tmp) / "task.safetensors"))
        return (Path(tmp) / "task.safetensors").stat().st_size


def refresh_summary(out_dir: str | os.PathLike, splits: dict | None = None, against: str | os.PathLike | None = None) -> Path:
    """Rewrite ``<out_dir>/summary.md`` from ``<out_dir>/results.csv``; with the pinned ``splits``
    (:func:`gpt.sms.load_splits`) also the section of intervals and paired comparisons
    (:func:`gpt.experiments.compare.comparison_markdown`, from the predictions in ``<out_dir>/runs``), and with
    ``against`` another results folder, each strategy against the same strategy there."""
    out = Path(out_dir)
    with results_lock(out):
        return _refresh_summary(out, splits, against)


def _refresh_summary(out: Path, splits: dict | None, against) -> Path:
    text = summary_markdown(_read_table(out / "results.csv"))
    if splits is not None:
        section = comparison_markdown(out, splits, order=strategy_order)
        if section:
            text += "\n" + section
        if against is not None:
            section = against_markdown(out, against, splits, order=strategy_order)
            if section:
                text += "\n" + section
    return atomic_write_text(out / "summary.md", text)


def summarize(table):
    """Mean and standard deviation (over seeds, ddof=1) per strategy of the main numbers of a results table."""

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


def plot_accuracy_vs_params(results, path: str | Path | None = None, ax=None, target: float | None = 0.98):
    """Balanced-split test accuracy (mean ± std over seeds) against trainable parameters, log x.

    ``results``: a results table (DataFrame) or the path of a ``results.csv``. The baseline (not a
    GPT) is drawn as a horizontal line; ``target`` as a dotted one. Saves to ``path`` if given.
    Returns the matplotlib axes.
    """
    import matplotlib.pyplot as plt  # here, not at the top: matplotlib is slow to import, and only the plots need it

    table = pd.read_csv(results) if isinstance(results, (str, Path)) else results
    s = summarize(table)
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.2))
    gpt_rows = s[s["strategy"] != "baseline"]
    lora = gpt_rows[gpt_rows["strategy"].str.startswith("lora-")]
    other = gpt_rows[~gpt_rows["strategy"].str.startswith("lora-")]
    for rows, style, name in ((lora, "o-", "LoRA (rank r)"), (other, "s", "full / last block / head")):
        if len(rows):
            ax.errorbar(rows["trainable_params"], 100 * rows["test_accuracy_mean"], yerr=100 * rows["test_accuracy_std"],
                        fmt=style, capsize=3, label=name)
            for _, r in rows.iterrows():
                text = r["strategy"].replace("lora-", "")
                ax.annotate(text, (r["trainable_params"], 100 * r["test_accuracy_mean"]), textcoords="offset points",
                            xytext=(4, -12 if r["strategy"].startswith("lora-") else 6), fontsize=8)
    base = s[s["strategy"] == "baseline"]
    if len(base):
        ax.axhline(100 * base["test_accuracy_mean"].iloc[0], color="gray", ls="--", lw=1,
                   label=f"bag-of-words baseline ({100 * base['test_accuracy_mean'].iloc[0]:.1f} %)")
    if target:
        ax.axhline(100 * target, color="tab:red", ls=":", lw=1, label=f"target {100 * target:.0f} %")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("balanced test accuracy (%)")
    n = int(s["n"].max()) if len(s) else 0
    ax.set_title(f"SMS spam: accuracy vs trainable parameters (mean ± std of {n} seeds)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    if path is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(path, dpi=120)
    return ax
