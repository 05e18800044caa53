"""Is best-epoch selection what makes a fine-tuning run fragile from one machine to the next?

Trains the headline recipe's configurations (default: full and LoRA r=8, seeds 0-2) once with bf16
autocast and once in fp32 -- two machines' worth of rounding on one machine -- and scores the test
splits after *every* epoch. Then asks, for each rule that picks the epoch to keep:

* ``val-accuracy``: the best validation accuracy, ties broken by the lower validation loss (the rule
  the committed results were made with);
* ``val-loss``: the lowest validation loss;
* ``last``: the last epoch (the learning rate has decayed to 0 there);

how far the kept model's balanced test accuracy moves between the two precisions, seed by seed, and
how often the two precisions keep different epochs. Writes ``<out>/runs/*.json`` (every epoch's
metrics) and ``<out>/summary.md``.

    python scripts/selection_rule.py --out results/selection_rule            # ~15 min on 2 cores
    python scripts/selection_rule.py --out results/selection_rule --summarize-only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RULES = ("val-accuracy", "val-loss", "last")
CONFIGS = {"full": ("full", {}), "lora-r8": ("lora", {"r": 8, "lora_alpha": 16.0})}


def chosen_epoch(history: dict, rule: str) -> int:
    """The 1-based epoch ``rule`` keeps, from a run's per-epoch validation history."""
    acc, loss = history["val_accuracy"], history["val_loss"]
    if rule == "val-accuracy":
        return max(range(len(acc)), key=lambda i: (acc[i], -loss[i])) + 1
    if rule == "val-loss":
        return min(range(len(loss)), key=lambda i: loss[i]) + 1
    if rule == "last":
        return len(acc)
    raise ValueError(rule)


def train_one(label: str, seed: int, precision: str, splits: dict) -> dict:
    """One run of the recipe, scored on val, test and test_natural after every epoch."""
    from gpt.finetune import build_model, default_config, end_epoch, epoch_batches, evaluate_split, finetune_step, setup

    strategy, extra = CONFIGS[label]
    config = default_config(strategy, seed=seed, precision=precision, **extra)
    run = setup(build_model(config), splits, config)
    per_epoch = []
    t0 = time.perf_counter()
    while run.epoch < config.epochs:
        run.model.train()
        run.epoch_batches = epoch_batches(run)
        for batch in run.epoch_batches:
            finetune_step(run, batch)
        end_epoch(run, time.perf_counter() - t0)
        scored = {}
        for split in ("test", "test_natural"):
            m = evaluate_split(run, split)
            scored[split] = {"accuracy": m["accuracy"], "f1": m["f1"], "predicted": list(m["predicted"])}
        per_epoch.append(scored)
    return {"label": label, "seed": seed, "precision": run.precision, "history": run.history, "per_epoch": per_epoch,
            "seconds": time.perf_counter() - t0}


def summarize(out: Path) -> str:
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    by = {(r["label"], r["seed"], r["precision"]): r for r in runs}
    meta = json.loads((out / "machine.json").read_text()) if (out / "machine.json").exists() else {}
    lines = ["# Which epoch to keep: how fragile each rule is", "",
             f"`python scripts/selection_rule.py --out {out}` on {meta.get('machine', '?')} (torch {meta.get('torch', '?')}, "
             f"commit {meta.get('commit', '?')}). Each configuration trained twice per seed, with bf16 autocast and in fp32 "
             "(the two ways course machines compute, see results/README.md), every epoch scored on the 300 balanced test "
             "messages. One message is 0.33 points.", "",
             "| configuration | seed | rule | epoch kept (bf16 / fp32) | balanced test accuracy % (bf16 / fp32) | |Δ| points |",
             "|---|---|---|---|---|---|"]
    stats = {rule: [] for rule in RULES}
    flips = {rule: 0 for rule in RULES}
    pairs = 0
    for label in CONFIGS:
        for seed in sorted({k[1] for k in by if k[0] == label}):
            a, b = by.get((label, seed, "bf16")), by.get((label, seed, "fp32"))
            if not a or not b:
                continue
            pairs += 1
            for rule in RULES:
                ea, eb = chosen_epoch(a["history"], rule), chosen_epoch(b["history"], rule)
                xa, xb = (100 * r["per_epoch"][e - 1]["test"]["accuracy"] for r, e in ((a, ea), (b, eb)))
                stats[rule].append(abs(xa - xb))
                flips[rule] += ea != eb
                lines.append(f"| {label} | {seed} | {rule} | {ea} / {eb} | {xa:.1f} / {xb:.1f} | {abs(xa - xb):.1f} |")
    lines += ["", "| rule | runs whose kept epoch differs between bf16 and fp32 | mean |Δ| points | largest |Δ| points | "
              "mean test accuracy % (bf16 / fp32) |", "|---|---|---|---|---|"]
    for rule in RULES:
        means = []
        for prec in ("bf16", "fp32"):
            xs = [100 * r["per_epoch"][chosen_epoch(r["history"], rule) - 1]["test"]["accuracy"] for k, r in by.items() if k[2] == prec]
            means.append(f"{np.mean(xs):.1f}" if xs else "–")
        d = stats[rule]
        lines.append(f"| {rule} | {flips[rule]} of {pairs} | {np.mean(d):.2f} | {max(d):.1f} | {' / '.join(means)} |" if d else f"| {rule} | – | – | – | – |")
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    return text


def machine() -> dict:
    from gpt.teaching.reference import machine_description
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    return {"machine": machine_description(), "torch": torch.__version__, "commit": commit, "python": platform.python_version()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/selection_rule")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    p.add_argument("--summarize-only", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    if not args.summarize_only:
        from gpt.sms import load_splits

        (out / "machine.json").write_text(json.dumps(machine(), indent=1))
        splits = load_splits()
        for label in args.configs:
            for seed in args.seeds:
                for prec in args.precisions:  # alternated, so a slow spell of the machine hits both
                    path = out / "runs" / f"{label}_seed{seed}_{prec}.json"
                    if path.exists():
                        continue
                    r = train_one(label, seed, prec, splits)
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(r))
                    os.replace(tmp, path)
                    print(f"{label} seed {seed} {prec}: val {[round(a * 149) for a in r['history']['val_accuracy']]}, "
                          f"test {[round(100 * e['test']['accuracy'], 1) for e in r['per_epoch']]} ({r['seconds']:.0f} s)", flush=True)
    print(summarize(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
