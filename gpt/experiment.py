"""The course's headline experiment: what LoRA buys, measured.

``python -m gpt experiment`` fine-tunes the reference checkpoint on the balanced SMS spam split with

* full fine-tuning, the last block (+ final norm + head), the head only,
* LoRA at ranks 1, 2, 4, 8, 16, 32 on every Linear layer of the transformer blocks (alpha = 2·r,
  so the update's scale alpha / r is 2 at every rank; the new classification head trains fully),
* and fits the bag-of-words baseline,

each with 3 seeds, every run in a fresh Python process (so timing and memory of one run do not
depend on the runs before it). Each run adds a row to ``<out>/results.csv`` (see
:data:`gpt.classify.RESULT_COLUMNS`) and writes ``<out>/runs/<strategy>_seed<seed>.json``; at the
end the command writes ``<out>/summary.md`` (mean ± std per strategy) and
``<out>/accuracy_vs_params.png`` (test accuracy against trainable parameters, log x).

The hyperparameters of each strategy are :data:`gpt.classify.DEFAULT_HPARAMS` (chosen on the
validation split). ``--skip-existing`` keeps rows already in ``results.csv`` that were made from the
same checkpoint, so an interrupted experiment resumes where it stopped.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .classify import LORA_RANKS, STRATEGIES, lora_label, refresh_summary, strategy_order, summarize

__all__ = ["experiment_runs", "run_experiment", "plot_accuracy_vs_params", "register_cli", "LORA_ALPHA_PER_RANK"]

LORA_ALPHA_PER_RANK = 2.0  # alpha = 2·r: the same scale alpha / r = 2 at every rank
DEFAULT_OUT = "results/finetune"


def experiment_runs(strategies=STRATEGIES + ("lora", "baseline"), ranks=LORA_RANKS) -> list[tuple[str, list[str]]]:
    """``(result label, extra finetune arguments)`` of every configuration the experiment trains."""
    runs = []
    for s in strategies:
        if s == "lora":
            runs += [(lora_label(r), ["--strategy", "lora", "--rank", str(r), "--alpha", f"{LORA_ALPHA_PER_RANK * r:g}"]) for r in ranks]
        elif s in STRATEGIES or s == "baseline":
            runs.append((s, ["--strategy", s]))
        else:
            raise ValueError(f"unknown strategy {s!r}; choose from {list(STRATEGIES) + ['lora', 'baseline']}")
    return sorted(runs, key=lambda r: strategy_order(r[0]))


def _existing(out: Path, checkpoint_sha: str) -> set[tuple[str, int]]:
    import pandas as pd

    csv = out / "results.csv"
    if not csv.exists():
        return set()
    t = pd.read_csv(csv)
    keep = (t["strategy"] == "baseline") | (t["checkpoint_sha256"] == checkpoint_sha)
    return {(s, int(seed)) for s, seed in zip(t.loc[keep, "strategy"], t.loc[keep, "seed"])}


def run_experiment(
    out: str | Path = DEFAULT_OUT,
    seeds=(0, 1, 2),
    strategies=STRATEGIES + ("lora", "baseline"),
    ranks=LORA_RANKS,
    checkpoint: str = "",
    epochs: int | None = None,
    skip_existing: bool = False,
    command: str = "",
    device: str = "cpu",
) -> Path:
    """Run every configuration of :func:`experiment_runs` for every seed (one process each); then
    write the summary and the plot. Returns the path of ``results.csv``. ``epochs`` overrides every
    strategy's default (for quick trials; the recorded experiment uses the defaults)."""
    from .data import sha256_file
    from .reference import reference_path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = Path(checkpoint) if checkpoint else reference_path()
    done = _existing(out, sha256_file(ckpt)) if skip_existing else set()
    runs = experiment_runs(strategies, ranks)
    todo = [(label, args, seed) for label, args in runs for seed in seeds if (label, seed) not in done]
    print(f"experiment: {len(runs)} configurations x {len(seeds)} seeds; {len(todo)} runs to do, results in {out}")
    code = "import sys; from gpt.classify import main; sys.exit(main(sys.argv[1:]))"
    t0 = time.perf_counter()
    for i, (label, args, seed) in enumerate(todo, 1):
        print(f"\n[{i}/{len(todo)}] {label}, seed {seed}  ({time.perf_counter() - t0:.0f} s so far)", flush=True)
        child = ["finetune", *args, "--seeds", str(seed), "--in-process", "--out", str(out), "--device", device,
                 "--command-line", command or "python -m gpt experiment"]
        if checkpoint:
            child += ["--checkpoint", str(checkpoint)]
        if epochs is not None and label != "baseline":
            child += ["--epochs", str(epochs)]
        rc = subprocess.call([sys.executable, "-c", code, *child])
        if rc:
            raise RuntimeError(f"the run {label} seed {seed} failed (exit code {rc}); rerun with --skip-existing to resume")
    refresh_summary(out)
    plot_accuracy_vs_params(out / "results.csv", out / "accuracy_vs_params.png")
    print(f"\nexperiment done in {time.perf_counter() - t0:.0f} s: {out / 'summary.md'}, {out / 'accuracy_vs_params.png'}")
    return out / "results.csv"


def plot_accuracy_vs_params(results, path: str | Path | None = None, ax=None, target: float | None = 0.98):
    """Balanced-split test accuracy (mean ± std over seeds) against trainable parameters, log x.

    ``results``: a results table (DataFrame) or the path of a ``results.csv``. The baseline (not a
    GPT) is drawn as a horizontal line; ``target`` as a dotted one. Saves to ``path`` if given.
    Returns the matplotlib axes.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

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


def _cmd_experiment(args) -> int:
    command = args.command_line or "python -m gpt " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    run_experiment(args.out, args.seeds, tuple(args.strategies), tuple(args.ranks), args.checkpoint, args.epochs,
                   args.skip_existing, command, args.device)
    return 0


def register_cli(subparsers) -> None:
    """Add the ``finetune`` and ``experiment`` commands to the ``python -m gpt`` argument parser's subparsers."""
    from .classify import register_cli as register_finetune

    register_finetune(subparsers)
    e = subparsers.add_parser(
        "experiment",
        help="the headline experiment: full / last-block / head / LoRA r=1..32 / baseline, 3 seeds each",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    e.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    e.add_argument("--strategies", nargs="+", default=list(STRATEGIES) + ["lora", "baseline"],
                   choices=list(STRATEGIES) + ["lora", "baseline"])
    e.add_argument("--ranks", type=int, nargs="+", default=list(LORA_RANKS), help="LoRA ranks (alpha = 2·r)")
    e.add_argument("--checkpoint", default="", help="pretrained GPT safetensors (default: the reference model)")
    e.add_argument("--epochs", type=int, default=None, help="override every strategy's epochs (quick trials only)")
    e.add_argument("--device", default="cpu")
    e.add_argument("--out", default=DEFAULT_OUT)
    e.add_argument("--skip-existing", action="store_true", help="keep rows already in results.csv (resume)")
    e.add_argument("--command-line", default="", help=argparse.SUPPRESS)
    e.set_defaults(func=_cmd_experiment)

