"""The LoRA variants ablation: ``python -m gpt experiment --suite variants``.

What each improvement of LoRA (:mod:`gpt.lora.variants`) buys on the spam task, measured like the
headline experiment (same reference checkpoint, same splits, 3 seeds, every run in its own process,
each row in ``results.csv``; :func:`gpt.experiments.runner.run_experiment` does the running and resuming):

* at r = 8, lora_alpha = 16 and the LoRA defaults (lr 3e-3, 5 epochs): plain LoRA, rsLoRA, DoRA,
  LoRA+ (B's learning rate 16 × A's) and the PiSSA start;
* at r = 32, lora_alpha = 16: plain LoRA and rsLoRA (rsLoRA's claim is about higher ranks);
* which layers to adapt, at r = 8: query + value only (the LoRA paper's choice), attention only,
  the MLP only (plain LoRA r = 8 adapts all of them).

``<out>/summary.md`` holds the usual table (:func:`gpt.experiments.results.summary_markdown`: accuracy, F1, time
per step, stored bytes per task) and intervals, and a section pairing every configuration with plain
LoRA r = 8 on the same test messages (:func:`versus_markdown`); ``<out>/variants.png`` is the plot.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..finetune import default_config
from ..io.files import atomic_write_text
from ..sms import load_splits
from .compare import load_outcomes, markdown_table, outcomes_table, paired_cells, truth_labels
from .results import refresh_summary, summarize
from .runner import run_experiment

__all__ = ["VARIANTS_OUT", "VARIANT_CONFIGS", "REFERENCE", "variant_configs", "variant_runs", "run_variants",
           "versus_table", "versus_markdown", "write_variants_summary", "plot_variants"]

VARIANTS_OUT = "results/lora_variants"
LORA_ALPHA = 16.0  # the same lora_alpha everywhere, so rsLoRA's scale differs from LoRA's
# (what the row is about, the FinetuneConfig overrides of the "lora" defaults)
VARIANT_CONFIGS: list[tuple[str, dict]] = [
    ("LoRA", dict(r=8)),
    ("rsLoRA", dict(r=8, use_rslora=True)),
    ("DoRA", dict(r=8, use_dora=True)),
    ("LoRA+ (ratio 16)", dict(r=8, loraplus_lr_ratio=16.0)),
    ("PiSSA start", dict(r=8, init_lora_weights="pissa")),
    ("LoRA, r = 32", dict(r=32)),
    ("rsLoRA, r = 32", dict(r=32, use_rslora=True)),
    ("query + value only", dict(r=8, target_modules=("q_proj", "v_proj"))),
    ("attention only", dict(r=8, target_modules=("attn",))),
    ("MLP only", dict(r=8, target_modules=("mlp",))),
]
REFERENCE = "lora-r8"  # every configuration is paired with plain LoRA r = 8 on all layers

def variant_configs(seed: int = 0) -> list[tuple[str, object]]:
    """``(description, FinetuneConfig)`` of every configuration (checked: a bad one is a ConfigError here)."""
    return [(text, default_config("lora", lora_alpha=LORA_ALPHA, seed=seed, **o)) for text, o in VARIANT_CONFIGS]


def variant_runs() -> list[tuple[str, dict]]:
    """``(result label, FinetuneConfig overrides)`` of every configuration, for :func:`gpt.experiments.runner.run_experiment`."""
    labels = [c.label for _, c in variant_configs()]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"two variant configurations share a label: {labels}")
    return [(label, {"strategy": "lora", "lora_alpha": LORA_ALPHA, **o}) for label, (_, o) in zip(labels, VARIANT_CONFIGS)]


def descriptions() -> dict[str, str]:
    """Result label -> what the configuration is."""
    return {c.label: text for text, c in variant_configs()}


def run_variants(out: str | os.PathLike = VARIANTS_OUT, seeds=(0, 1, 2), checkpoint: str = "", epochs: int | None = None,
                 skip_existing: bool = False, command: str = "", device: str = "cpu", overwrite: bool = False) -> Path:
    """Train every configuration for every seed (resumable with ``skip_existing``), then write
    ``summary.md`` (with :func:`versus_markdown`) and ``variants.png``. Returns ``summary.md``'s path."""
    runs = variant_runs()  # checks every configuration before any run
    run_experiment(out, seeds=tuple(seeds), checkpoint=checkpoint, epochs=epochs, skip_existing=skip_existing,
                   command=command or "python -m gpt experiment --suite variants", device=device, overwrite=overwrite, runs=tuple(runs))
    path = write_variants_summary(out)
    plot_variants(Path(out) / "results.csv", Path(out) / "variants.png")
    return path


def versus_table(out_dir: str | os.PathLike, splits: dict, reference: str = REFERENCE):
    """One row per configuration in ``out_dir``: balanced-test accuracy and natural spam F1 with 95 %
    intervals, and each paired with ``reference`` on the same test messages (difference in points,
    its interval, the verdict, in columns ``acc_vs_ref...`` / ``f1_vs_ref...``; :func:`gpt.experiments.compare.outcomes_table`)."""
    outcomes = load_outcomes(out_dir, splits)
    outcomes.pop("skipped", None)
    known = [label for label, _ in variant_runs()]
    position = lambda s: (known.index(s), s) if s in known else (len(known), s)  # noqa: E731
    t = outcomes_table(outcomes, *truth_labels(splits), order=position, references=(reference,))
    return t.rename(columns=lambda c: c.replace(f"_vs_{reference}", "_vs_ref"))


def versus_markdown(out_dir: str | os.PathLike, splits: dict, reference: str = REFERENCE) -> str:
    """The "against plain LoRA r = 8" section of the variants' ``summary.md``."""
    t = versus_table(out_dir, splits, reference)
    if t.empty:
        return ""
    what = descriptions()
    lines = [
        f"## Against plain LoRA r = 8 ({reference}), paired on the same test messages",
        "",
        "Every configuration uses lora_alpha = 16, lr 3e-3, 5 epochs (the LoRA defaults) and trains the head too. 95 % bootstrap",
        "intervals (messages resampled, seeds pooled); \"better\" / \"worse\" only when the interval of the paired difference",
        f"excludes 0, otherwise \"no detectable difference\". One balanced-test message is {100 / len(splits['test']):.2f} points.",
        "",
    ]
    columns = ["configuration", "label", "balanced test accuracy [95 % interval]", "vs LoRA r = 8", "natural spam F1 [95 % interval]",
               "F1 vs LoRA r = 8"]
    rows = [[what.get(r["strategy"], r["strategy"]), r["strategy"], paired_cells(r, "ref")] for _, r in t.iterrows()]
    return "\n".join(lines + markdown_table(columns, rows)) + "\n"


def write_variants_summary(out_dir: str | os.PathLike = VARIANTS_OUT) -> Path:
    """Rewrite ``<out_dir>/summary.md``: :func:`gpt.experiments.results.refresh_summary`'s table and intervals, then
    :func:`versus_markdown` (atomically; nothing else in the folder changes)."""

    out = Path(out_dir)
    if not (out / "results.csv").is_file():
        raise ConfigError(f"{out / 'results.csv'} does not exist: run `python -m gpt experiment --suite variants` first")
    splits = load_splits()
    path = refresh_summary(out, splits)
    text = path.read_text() + "\n" + versus_markdown(out, splits)
    return atomic_write_text(path, text)


def plot_variants(results, path: str | os.PathLike | None = None):
    """Balanced test accuracy (mean ± std over seeds) of every configuration, next to its time per step
    and its adapter's size; plain LoRA r = 8's mean as a dashed line. Returns the figure."""
    import matplotlib.pyplot as plt  # here, not at the top: matplotlib is slow to import and only the plot needs it

    table = pd.read_csv(results) if isinstance(results, (str, Path)) else results
    s = summarize(table).set_index("strategy")
    labels = [label for label, _ in variant_runs() if label in s.index]
    s = s.loc[labels]
    what = descriptions()
    names = [f"{what.get(label, label)}\n{label}" for label in labels]
    y = np.arange(len(labels))[::-1]
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.45 * len(labels) + 1.6), sharey=True, gridspec_kw={"width_ratios": [2, 1, 1]})
    axes[0].errorbar(100 * s["test_accuracy_mean"], y, xerr=100 * s["test_accuracy_std"], fmt="o", capsize=3)
    if REFERENCE in s.index:
        axes[0].axvline(100 * s.loc[REFERENCE, "test_accuracy_mean"], color="gray", ls="--", lw=1, label="LoRA r = 8")
        axes[0].legend(loc="lower left", fontsize=8)
    axes[0].set_xlabel("balanced test accuracy (%), mean ± std over seeds")
    axes[1].barh(y, 1000 * s["seconds_per_step_mean"], xerr=1000 * s["seconds_per_step_std"], color="tab:orange")
    axes[1].set_xlabel("ms per training step")
    axes[2].barh(y, s["stored_bytes_mean"] / 1e3, color="tab:green")
    axes[2].set_xlabel("adapter size per task (kB)")
    axes[0].set_yticks(y, names, fontsize=8)
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("LoRA variants on SMS spam (course reference GPT, 3 seeds)")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
