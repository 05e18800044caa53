"""Does LoRALinear's training path cost accuracy? LoRA r=8 with the package's defaults, once with the
package's forward/backward (gpt.lora's _LowRankUpdateLinear) and once with the term-by-term definition
``base(x) + scaling·B(A(dropout(x)))`` left to autograd, same seeds, each seed's two runs paired on the
same test messages by :func:`gpt.experiments.compare.reproduction_table` (identical / same within noise / differs).

    python scripts/lora_path_ab.py                                  # seeds 0-4, ~6 min on 2 cores
    python scripts/lora_path_ab.py --seeds 0 1 2 --out /tmp/ab      # fewer seeds, elsewhere
    python scripts/lora_path_ab.py --reuse                          # the comparison again, from the runs already made

Writes ``<out>/package/runs/``, ``<out>/definition/runs/`` and ``<out>/comparison.md`` (default out:
results/lora_path_ab). Before the package kept the low-rank term apart under bf16 autocast, this
comparison found every seed lower with the package's path (94.0 / 94.7 / 93.3 % against 95.3 / 95.0 /
94.3 %, seeds 0-2).
"""

import argparse
import json
import sys
from pathlib import Path

import torch.nn.functional as F

import gpt.lora as L
from gpt.experiments.compare import reproduction_markdown, reproduction_table
from gpt.experiments.runner import run_finetune
from gpt.finetune import default_config
from gpt.teaching.reference import machine_description
from gpt.sms import load_splits
from gpt.experiments.stats import seed_paired_interval, verdict

PACKAGE_FORWARD = L.LoRALinear.forward


def definition_forward(self, x):
    """LoRA as its paper writes it, every product left to autograd and autocast."""
    if self.merged or self.disabled:
        return F.linear(x, self.weight, self.bias)
    return F.linear(x, self.weight, self.bias) + self.scaling * self.lora_B(self.lora_A(self.lora_dropout(x)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--out", type=Path, default=Path("results/lora_path_ab"))
    ap.add_argument("--reuse", action="store_true", help="take the runs already in --out instead of training them again")
    args = ap.parse_args()
    command = "python " + " ".join(sys.argv)
    rows = {}
    for seed in args.seeds:
        for name, forward in (("package", PACKAGE_FORWARD), ("definition", definition_forward)):
            done = args.out / name / "runs" / f"lora-r8_seed{seed}.json"
            if args.reuse and done.is_file():
                row = json.loads(done.read_text())["row"]
            else:
                L.LoRALinear.forward = forward
                try:
                    row = run_finetune(default_config("lora", seed=seed), args.out / name, command=command, progress=False, overwrite=True)
                finally:
                    L.LoRALinear.forward = PACKAGE_FORWARD
            rows[name, seed] = row
            print(f"{name:10s} seed {seed}: balanced test accuracy {row['test_accuracy']:.4f}, natural spam F1 {row['natural_f1']:.4f}, "
                  f"best epoch {row['best_epoch']}, {1000 * row['seconds_per_step']:.0f} ms/step", flush=True)
    table = reproduction_table(args.out / "package", args.out / "definition", load_splits())
    text = (f"# LoRA's training path against the definition\n\n- command: `{command}`\n- machine: {machine_description()}\n\n"
            "Rows: the package's path; reference: the term-by-term definition, same seeds, paired on the same messages.\n\n"
            + reproduction_markdown(table, args.out / "definition") + "\n" + seed_level(rows, args.seeds))
    (args.out / "comparison.md").write_text(text)
    print(text)


def seed_level(rows: dict, seeds) -> str:
    """Per seed, package − definition, and the t-interval of the mean difference over the seeds
    (:func:`gpt.experiments.stats.seed_paired_interval`): does the path change the *expected* accuracy?"""
    lines = ["Per seed, package − definition (points), and the 95 % t-interval of the mean over the seeds:", "",
             "| metric | " + " | ".join(f"seed {s}" for s in seeds) + " | mean [95 % interval] | verdict |",
             "|---|" + "---|" * len(seeds) + "---|---|"]
    for key, name in (("test_accuracy", "balanced test accuracy"), ("natural_f1", "natural spam F1")):
        d = [100 * (rows["package", s][key] - rows["definition", s][key]) for s in seeds]
        mean, low, high = seed_paired_interval(d)
        lines.append(f"| {name} | " + " | ".join(f"{x:+.1f}" for x in d) + f" | {mean:+.1f} [{low:+.1f}, {high:+.1f}] | {verdict(low, high)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
