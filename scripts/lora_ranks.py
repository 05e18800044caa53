"""LoRA rank, honestly: each rank with a fixed lora_alpha (16) and with lora_alpha = 2·r, the learning rate
chosen on the validation split per rank, then 3 seeds at the chosen rate.

Every run is ``python -m gpt finetune --strategy lora`` (the same code as the headline experiment):

1. search: seed 0 at each learning rate; each (scheme, lr) writes into its own folder
   ``results/lora_ranks/search/<scheme>/lr<lr>/`` (results.csv + runs/*.json);
2. choice: per (scheme, rank) the rate with the best validation accuracy (ties: the lower validation
   loss of the kept epoch) -- never the test split;
3. final: seeds 0, 1, 2 at the chosen rate into ``results/lora_ranks/<scheme>/``;
4. ``results/lora_ranks/summary.md``: the search table and the final table (mean ± std over seeds).

    python scripts/lora_ranks.py              # about 40 min on 2 CPU cores
    python scripts/lora_ranks.py --render     # only rewrite summary.md from the files
Interrupted? Run it again: finished runs are kept (``--resume``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

OUT = Path("results/lora_ranks")
RANKS = (1, 4, 8, 16, 32)
LRS = ("1e-3", "3e-3", "1e-2")
SCHEMES = {"alpha16": lambda r: 16.0, "alpha2r": lambda r: 2.0 * r}


def finetune(rank: int, alpha: float, lr: str, seeds: list[int], out: Path) -> None:
    cmd = [sys.executable, "-m", "gpt", "finetune", "--strategy", "lora", "--rank", str(rank), "--alpha", f"{alpha:g}",
           "--lr", lr, "--seeds", *map(str, seeds), "--out", str(out), "--resume"]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)


def val_loss(folder: Path, rank: int, seed: int = 0) -> float:
    doc = json.loads((folder / "runs" / f"lora-r{rank}_seed{seed}.json").read_text())
    return doc["metrics"]["val"]["loss"]


def search_table() -> pd.DataFrame:
    rows = []
    for scheme in SCHEMES:
        for lr in LRS:
            folder = OUT / "search" / scheme / f"lr{lr}"
            if not (folder / "results.csv").exists():
                continue
            for _, r in pd.read_csv(folder / "results.csv").iterrows():
                rank = int(r["r"])
                rows.append({"scheme": scheme, "r": rank, "lora_alpha": r["lora_alpha"], "lr": float(lr),
                             "val_accuracy": r["val_accuracy"], "val_loss": val_loss(folder, rank), "best_epoch": r["best_epoch"]})
    return pd.DataFrame(rows)


def choose(search: pd.DataFrame) -> dict:
    best = {}
    for (scheme, rank), g in search.groupby(["scheme", "r"]):
        g = g.sort_values(["val_accuracy", "val_loss"], ascending=[False, True])
        best[(scheme, int(rank))] = g.iloc[0]["lr"]
    return best


def render() -> Path:
    from gpt.experiments.results import summarize

    search = search_table()
    best = choose(search)
    lines = ["# LoRA rank with a fixed and a rank-proportional lora_alpha, learning rate chosen on validation", "",
             "Produced by `python scripts/lora_ranks.py` (every run is `python -m gpt finetune --strategy lora`, the "
             "reference checkpoint, the balanced SMS split). Search: seed 0 at each learning rate; the rate with the best "
             "validation accuracy (ties: lower validation loss) is kept per rank; then seeds 0, 1, 2. "
             "Test accuracy: 300 balanced messages (one message = 0.33 points). Times are in the results.csv files but "
             "not compared here: other work ran on the machine during the sweep.", "", "## Search (seed 0, validation split, 149 messages)", "",
             "| scheme | r | lora_alpha | scaling | " + " | ".join(f"val acc, lr {lr}" for lr in LRS) + " | chosen lr |",
             "|---|---|---|---|" + "---|" * len(LRS) + "---|"]
    for (scheme, rank), lr in sorted(best.items()):
        g = search[(search["scheme"] == scheme) & (search["r"] == rank)].set_index("lr")
        alpha = float(g["lora_alpha"].iloc[0])
        cells = [f"{100 * g.loc[float(x), 'val_accuracy']:.1f} %" if float(x) in g.index else "–" for x in LRS]
        lines.append(f"| {scheme} | {rank} | {alpha:g} | {alpha / rank:g} | " + " | ".join(cells) + f" | {lr:g} |")
    lines += ["", "## Final (3 seeds at the chosen rate): balanced test accuracy", "",
              "| scheme | r | lora_alpha | lr | trainable params | test accuracy (mean ± std) | min–max | natural-split F1 |",
              "|---|---|---|---|---|---|---|---|"]
    for scheme in SCHEMES:
        csv = OUT / scheme / "results.csv"
        if not csv.exists():
            continue
        table = pd.read_csv(csv)
        s = summarize(table).set_index("strategy")
        for label, r in s.iterrows():
            rank = int(label.split("-r")[1])
            alpha = float(table.loc[table["strategy"] == label, "lora_alpha"].iloc[0])
            lr = float(table.loc[table["strategy"] == label, "lr"].iloc[0])
            lines.append(
                f"| {scheme} | {rank} | {alpha:g} | {lr:g} | {int(r['trainable_params']):,} | {100 * r['test_accuracy_mean']:.1f} ± "
                f"{100 * r['test_accuracy_std']:.1f} % (n={int(r['n'])}) | {100 * r['test_accuracy_min']:.1f}–{100 * r['test_accuracy_max']:.1f} % "
                f"| {100 * r['natural_f1_mean']:.1f} % |"
            )
    path = OUT / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--render", action="store_true", help="only rewrite summary.md")
    args = p.parse_args(argv)
    if not args.render:
        for scheme, alpha in SCHEMES.items():
            for lr in LRS:
                for rank in RANKS:
                    finetune(rank, alpha(rank), lr, [0], OUT / "search" / scheme / f"lr{lr}")
        for (scheme, rank), lr in sorted(choose(search_table()).items()):
            finetune(rank, SCHEMES[scheme](rank), f"{lr:g}", [0, 1, 2], OUT / scheme)
    print(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
