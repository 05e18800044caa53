"""Fine-tuning speed as a user meets it: the course's own command line, whole runs, first passes included.

Each configuration runs as ``python -m gpt finetune --strategy ... --seed 0`` in a process of its own
(the reference checkpoint, the recipe's epochs, the default precision ``auto`` unless ``--precision``),
alternated (full, LoRA, full, LoRA, ...) so that a slow spell of the machine hits both. The numbers are
the run's own: seconds per epoch (training steps and the epoch's validation, all epochs, the first
pass over every new batch shape included) and seconds per optimizer step, plus the process's wall time
(start-up and the final evaluation included).

With ``--headline``, it also runs the whole headline experiment (what ``bash scripts/main.sh`` runs,
into ``runs/bench/headline-<date>-<time>``) and records its wall time and its comparison with the committed results.

    python bench/bench_finetune_cli.py                    # full vs LoRA r=8, 3 repeats each (~5 min on 2 cores)
    python bench/bench_finetune_cli.py --headline         # + the headline experiment (~12 min more)
    python bench/bench_finetune_cli.py --epochs 1 --repeats 1 --out /tmp/bench   # smoke test

Targets (issue: "fine-tuning fast where users run it"): LoRA r=8 time per epoch at most 0.8x full
fine-tuning; the headline experiment at most 12 minutes on 2 cores. Writes bench/results/finetune_cli.md
and .json (``finetune_cli_fp32.*`` / ``_bf16.*`` with ``--precision``), with the CPU, whether it has native bf16, and the precision each run trained in. Needs the
SMS data (``GPT_DATA_MIRROR`` offline). Run it on an otherwise idle machine: the file records the CPU
that other processes used meanwhile (processes running under ``nice`` are counted apart).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BUSY, OtherLoad, run_info, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"full": ["--strategy", "full"], "lora-r8": ["--strategy", "lora", "--rank", "8", "--alpha", "16"]}
LORA_TARGET = 0.8  # LoRA r=8 seconds per epoch / full fine-tuning's
HEADLINE_TARGET_S = 12 * 60


def finetune_once(label: str, args, out_dir: Path) -> dict:
    """One ``python -m gpt finetune`` process; its run file's timings and the process's wall time."""
    out = out_dir / f"{label}-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "gpt", "finetune", *CONFIGS[label], "--seeds", "0", "--out", str(out)]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    if args.precision:
        cmd += ["--precision", args.precision]
    env = {**os.environ, "GPT_PROGRESS": "off"}
    with OtherLoad() as load:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    (run_file,) = (out / "runs").glob("*_seed0.json")
    doc = json.loads(run_file.read_text())
    return {
        "config": label, "seconds_per_epoch": doc["seconds_per_epoch"], "ms_per_step": 1000 * doc["seconds_per_step"],
        "epochs": doc["config"]["epochs"], "process_seconds": round(wall, 2), "precision": doc["precision"],
        "balanced_test_accuracy": doc["metrics"]["test"]["accuracy"],
        "other_load_cores": round(load.cores, 3), "other_niced_load_cores": round(load.niced_cores, 3),
    }


def headline_once(args) -> dict:
    """The headline experiment, as ``bash scripts/main.sh`` runs it, into a run folder of its own that is
    kept (``runs/bench/headline-<date>-<time>``, ignored by git): its results can be inspected or committed."""
    out = Path("runs") / "bench" / time.strftime("headline-%Y%m%d-%H%M%S", time.gmtime())  # from the repository root
    cmd = [sys.executable, "-m", "gpt", "experiment", "--out", str(out)]
    if args.precision:
        cmd += ["--precision", args.precision]
    with OtherLoad() as load:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "GPT_PROGRESS": "off"}, cwd=ROOT)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    out = ROOT / out
    comparison = (out / "comparison.md").read_text() if (out / "comparison.md").is_file() else ""
    return {"config": "headline experiment", "folder": str(out.relative_to(ROOT)), "process_seconds": round(wall, 1), "other_load_cores": round(load.cores, 3),
            "other_niced_load_cores": round(load.niced_cores, 3), "comparison": comparison}


def render(info: dict, rows: list[dict]) -> str:
    runs = [r for r in rows if r["config"] in CONFIGS]
    med = {c: statistics.median(r["seconds_per_epoch"] for r in runs if r["config"] == c) for c in CONFIGS}
    step = {c: statistics.median(r["ms_per_step"] for r in runs if r["config"] == c) for c in CONFIGS}
    ratio = med["lora-r8"] / med["full"]
    precision = "/".join(sorted({r["precision"] for r in runs}))
    lines = [
        "# Fine-tuning speed in the course's own command-line runs", "", "{header}",
        f"Each run: `python -m gpt finetune --strategy ... --seeds 0` in its own process, reference checkpoint, "
        f"{runs[0]['epochs']} epochs, precision {precision}, alternated. Seconds per epoch = the run's training time "
        "(steps and each epoch's validation, first passes over new batch shapes included) / epochs.", "",
        "| # | configuration | s / epoch | ms / step | process wall s | balanced test accuracy | other load (cores) | niced load (cores) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(runs, 1):
        lines.append(f"| {i} | {r['config']} | {r['seconds_per_epoch']:.2f} | {r['ms_per_step']:.1f} | {r['process_seconds']:.1f} | "
                     f"{100 * r['balanced_test_accuracy']:.1f} % | {r['other_load_cores']:.2f} | {r['other_niced_load_cores']:.2f} |")
    verdict = "met" if ratio <= LORA_TARGET else "**not met**"
    lines += ["", f"Median seconds per epoch: full {med['full']:.2f}, LoRA r=8 {med['lora-r8']:.2f}: **LoRA / full = {ratio:.2f}×** "
              f"(target ≤ {LORA_TARGET}: {verdict}); per step {step['lora-r8']:.1f} vs {step['full']:.1f} ms ({step['lora-r8'] / step['full']:.2f}×)."]
    for r in rows:
        if r["config"] == "headline experiment":
            ok = "met" if r["process_seconds"] <= HEADLINE_TARGET_S else "**not met**"
            lines += ["", f"The headline experiment (`python -m gpt experiment`, what `bash scripts/main.sh` runs): "
                      f"**{r['process_seconds'] / 60:.1f} minutes** (target ≤ {HEADLINE_TARGET_S // 60}: {ok}); other load "
                      f"{r['other_load_cores']:.2f} cores, niced {r['other_niced_load_cores']:.2f}. Its comparison with the committed results:",
                      "", r["comparison"].strip()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs of each configuration, alternated (default 3)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the recipe's, 5)")
    ap.add_argument("--precision", choices=["auto", "bf16", "fp32"], default=None, help="training precision (default: the CLI's, auto)")
    ap.add_argument("--headline", action="store_true", help="also time the whole headline experiment")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    info, rows = run_info(), []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for label in CONFIGS:
                rows.append(finetune_once(label, args, Path(tmp)))
                r = rows[-1]
                print(f"[{len(rows)}/{args.repeats * len(CONFIGS)}] {label}: {r['seconds_per_epoch']:.2f} s/epoch, "
                      f"{r['ms_per_step']:.1f} ms/step ({r['precision']}; other load {r['other_load_cores']:.2f} cores)", flush=True)
        if args.headline:
            rows.append(headline_once(args))
            print(f"headline experiment: {rows[-1]['process_seconds'] / 60:.1f} min, in {rows[-1]['folder']}", flush=True)
    info["other_load_cores"] = max(r["other_load_cores"] for r in rows)
    name = "finetune_cli" + (f"_{args.precision}" if args.precision in ("bf16", "fp32") else "")  # auto: the machine's choice
    md, js = write_results(name, info, rows, render(info, rows), args.out)
    print(md.read_text())
    if info["other_load_cores"] > BUSY:
        print(f"warning: other processes used up to {info['other_load_cores']:.2f} cores: rerun on an idle machine", file=sys.stderr)


if __name__ == "__main__":
    main()
