"""The course's pretraining loop against the best-known course's, side by side in one run, with MFU.

The anchor (``anchor_gpt.py``: that book's GPT architecture and training loop, re-implemented in
its style) and the course (``gpt.train.pretrain`` on ``GPT(GPTConfig.from_preset("course"))``)
train the same shapes (V=4,096, d=192, 4 layers, 3 heads, context 256) with the same batch
(16 × 256 tokens) on the same random token ids. Configurations:

* ``anchor, fp32``   -- the anchor's default loop
* ``anchor, bf16``   -- the same under ``torch.autocast(bfloat16)``
* ``course, default`` -- ``python -m gpt pretrain``'s defaults (precision "auto": bf16 on a CPU with
  fast bf16; attention "auto"; fused cross-entropy; fused AdamW)
* ``course, fp32``    -- the same in fp32
* ``course, --compile`` -- the defaults plus ``torch.compile`` (compile time reported, from an empty
  compiler cache every time)

Every configuration runs in its own process (``--worker``), interleaved: repeat 1 runs each once,
then repeat 2, ... (the order rotates). Each process times ``--warmup`` untimed and ``--steps``
timed steps; a configuration's step time is the median over its repeats of each process's median.
tokens/s = batch × context / that. A process during which other processes used more than 0.2 cores
is run again (up to 3 tries). The machine's peak matmul FLOP/s (bf16 and fp32, best of large square
matmuls) is measured before and after; MFU = tokens/s × model FLOPs per token ÷ the bf16 peak
(see ``gpt/speed.py`` for the FLOP count). Finally one more process profiles the default step with
``torch.profiler`` (where the time goes).

    python bench/bench_vs_reference.py                       # the real run (~10 minutes on 2 cores)
    python bench/bench_vs_reference.py --steps 2 --warmup 1 --repeats 1 --batch-size 2 --context 32 --skip-compile --peak-seconds 0.05 --out /tmp/bench  # smoke test

Writes bench/results/vs_reference.md, .json and .png.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import BUSY, OtherLoad, RESULTS, run_info, time_training, write_results  # noqa: E402

CONFIGS = {
    # name: (model, precision, compile)
    "anchor, fp32": ("anchor", "fp32", False),
    "anchor, bf16": ("anchor", "bf16", False),
    "course, default": ("course", "auto", False),
    "course, fp32": ("course", "fp32", False),
    "course, --compile": ("course", "auto", True),
}
TARGET_VS_ANCHOR_FP32, TARGET_VS_ANCHOR_BF16, TARGET_MFU = 2.0, 1.25, 0.60


# ---------------------------------------------------------------------------------------------
# One configuration, in its own process


def _random_ids(vocab_size: int, n: int, seed: int):
    import numpy as np

    return np.random.default_rng(seed).integers(0, vocab_size, n).astype(np.int64)


def _course_config(args):
    from gpt.model import GPTConfig

    return GPTConfig.from_preset("course", context_length=args.context)


def run_course(args, precision: str, compile_: bool) -> dict:
    from gpt.model import GPT, count_parameters

    config = _course_config(args)
    r = time_training(config, args.steps, args.warmup, args.batch_size, precision, args.seed, compile=compile_)
    return {"step_seconds": r["step_seconds"], "precision": r["precision"], "parameters": count_parameters(GPT(config)),
            "compile_seconds": r["compile_seconds"], "final_loss": r["final_train_loss"]}


def run_anchor(args, precision: str) -> dict:
    import torch

    from anchor_gpt import GPTModel, calc_loss_batch, config_like, make_loader

    c = _course_config(args)
    torch.manual_seed(args.seed)
    model = GPTModel(config_like(c.vocab_size, c.context_length, c.n_embd, c.n_layer, c.n_head))
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    loader = make_loader(_random_ids(c.vocab_size, 200_000, args.seed).tolist(), args.batch_size, c.context_length, args.seed)
    device = torch.device("cpu")
    steps, batches = [], iter(loader)
    model.train()
    for i in range(args.warmup + args.steps):
        t = time.perf_counter()
        try:
            input_batch, target_batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            input_batch, target_batch = next(batches)
        optimizer.zero_grad()
        if precision == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = calc_loss_batch(input_batch, target_batch, model, device)
        else:
            loss = calc_loss_batch(input_batch, target_batch, model, device)
        loss.backward()
        optimizer.step()
        steps.append(time.perf_counter() - t)
    return {"step_seconds": steps[args.warmup:], "precision": precision, "final_loss": loss.item(),
            "parameters": sum(p.numel() for p in model.parameters())}


def profile_course(args) -> dict:
    """Self CPU time per step of the top operators of the default course step (torch.profiler)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from gpt.model import GPT
    from gpt.runtime.device import pick_device, resolve_precision
    from gpt.train import get_batch, make_optimizer, train_step
    from gpt.train_config import TrainConfig

    config = _course_config(args)
    cfg = TrainConfig(batch_size=args.batch_size)
    device = pick_device("cpu")
    precision = resolve_precision(cfg.precision, device)
    torch.manual_seed(args.seed)
    model = GPT(config)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas)
    ids = torch.from_numpy(_random_ids(config.vocab_size, 200_000, args.seed))
    n = 5

    def step(i):
        x, y = get_batch(ids, config.context_length, args.batch_size, args.seed, i)
        train_step(model, opt, x, y, 1e-3, cfg, device, precision)

    for i in range(3):
        step(i)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        for i in range(n):
            step(3 + i)
        wall = (time.perf_counter() - t) / n
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ops) / n / 1e3
    top = [{"op": e.key, "ms_per_step": e.self_cpu_time_total / n / 1e3, "calls_per_step": e.count / n} for e in ops[:12]]
    return {"profiled_step_ms": wall * 1e3, "self_cpu_ms_per_step": total, "top_ops": top, "precision": precision}


def worker(args) -> int:
    if args.worker == "profile":
        out = profile_course(args)
    else:
        model, precision, compile_ = CONFIGS[args.worker]
        out = run_anchor(args, precision) if model == "anchor" else run_course(args, precision, compile_)
    print("RESULT " + json.dumps(out), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# The parent: interleaved repeats, peaks, results


def spawn(name: str, args) -> dict:
    """Run one configuration in a fresh process; returns its result plus the other processes' load."""
    cmd = [sys.executable, __file__, "--worker", name, "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--batch-size", str(args.batch_size), "--context", str(args.context), "--seed", str(args.seed)]
    for attempt in range(1, 4):
        with tempfile.TemporaryDirectory(prefix="inductor-") as cache:  # --compile starts from an empty compiler cache
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
            with OtherLoad() as load:
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
        r = json.loads(line[len("RESULT "):])
        r.update(other_load_cores=load.cores, tries=attempt)
        if load.cores <= BUSY:
            break
        print(f"  ({name}: other processes used {load.cores:.2f} cores; again in 30 s)", flush=True)
        time.sleep(30)
    return r


def measure_peaks(seconds: float) -> dict:
    import torch

    from gpt.runtime.speed import matmul_peak_flops

    return {"bf16": matmul_peak_flops(torch.bfloat16, seconds=seconds), "fp32": matmul_peak_flops(torch.float32, seconds=seconds)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20, help="timed steps per process")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (the compiled row compiles in its first)")
    p.add_argument("--repeats", type=int, default=3, help="processes per configuration")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-compile", action="store_true", help="leave out the --compile row")
    p.add_argument("--peak-seconds", type=float, default=1.0, help="seconds per peak-matmul measurement (3 per precision, before and after)")
    p.add_argument("--out", default=None, help="results folder (default bench/results)")
    p.add_argument("--render-only", metavar="JSON", help="rewrite the .md and .png from an existing results .json")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.render_only:
        doc = json.loads(Path(args.render_only).read_text())
        rows = doc.pop("rows")
        return finish(doc, rows, args.out or Path(args.render_only).parent)

    import torch

    from gpt.runtime.speed import training_flops_per_token

    names = [n for n in CONFIGS if not (args.skip_compile and CONFIGS[n][2])]
    info = run_info()
    info.update(batch_size=args.batch_size, context_length=args.context, steps_timed=args.steps, warmup_steps=args.warmup,
                repeats=args.repeats, flops_per_token=training_flops_per_token(_course_config(args)))
    peaks_before = measure_peaks(args.peak_seconds)
    print(f"peak matmul: bf16 {peaks_before['bf16'] / 1e9:.0f} GFLOP/s, fp32 {peaks_before['fp32'] / 1e9:.0f} GFLOP/s", flush=True)
    runs = {n: [] for n in names}
    for rep in range(args.repeats):
        order = names[rep % len(names):] + names[: rep % len(names)]
        for name in order:
            r = spawn(name, args)
            runs[name].append(r)
            med = statistics.median(r["step_seconds"])
            extra = f", compile {r['compile_seconds']:.1f} s" if r.get("compile_seconds") else ""
            print(f"repeat {rep + 1}  {name:18s} {args.batch_size * args.context / med:8.0f} tokens/s ({med * 1000:.0f} ms/step{extra})", flush=True)
    peaks_after = measure_peaks(args.peak_seconds)
    info["peak_flops"] = {k: max(peaks_before[k], peaks_after[k]) for k in peaks_before}
    info["peak_flops_before_after"] = {"before": peaks_before, "after": peaks_after}
    info["profile"] = spawn("profile", args)
    info["torch_threads"] = torch.get_num_threads()

    rows = []
    for name in names:
        rs = runs[name]
        medians = [statistics.median(r["step_seconds"]) for r in rs]
        step = statistics.median(medians)
        tps = args.batch_size * args.context / step
        rows.append({
            "label": name, "model": CONFIGS[name][0], "precision": rs[0]["precision"], "compile": CONFIGS[name][2],
            "parameters": rs[0]["parameters"], "step_seconds_median": step, "repeat_medians": medians,
            "tokens_per_second": tps, "model_flops_per_second": tps * info["flops_per_token"],
            "mfu_bf16_peak": tps * info["flops_per_token"] / info["peak_flops"]["bf16"],
            "compile_seconds": [r.get("compile_seconds") for r in rs] if CONFIGS[name][2] else None,
            "final_loss": [r["final_loss"] for r in rs],
            "other_load_cores": max(r["other_load_cores"] for r in rs), "tries": [r["tries"] for r in rs],
        })
    info["other_load_cores"] = max(r["other_load_cores"] for r in rows)
    return finish(info, rows, args.out)


def finish(info: dict, rows: list[dict], out) -> int:
    md, js = write_results("vs_reference", info, rows, render(info, rows), out)
    plot(info, rows, Path(out) if out else RESULTS)
    print(f"wrote {md} and {js}")
    if info["other_load_cores"] > BUSY:
        print(f"warning: other processes used {info['other_load_cores']:.2f} cores during a measurement; the numbers are not valid", file=sys.stderr)
    return 0


def _row(rows, label):
    return next((r for r in rows if r["label"] == label), None)


def render(info: dict, rows: list[dict]) -> str:
    a32, a16, ours = _row(rows, "anchor, fp32"), _row(rows, "anchor, bf16"), _row(rows, "course, default")
    peak16, peak32 = info["peak_flops"]["bf16"], info["peak_flops"]["fp32"]
    table = [
        "| configuration | precision | parameters | ms/step | per-repeat medians (ms) | tokens/s | vs anchor fp32 | vs anchor bf16 | model GFLOP/s | MFU (of bf16 peak) | other load (cores) |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        table.append(
            f"| {r['label']} | {r['precision']} | {r['parameters']:,} | {r['step_seconds_median'] * 1000:.0f} | "
            f"{', '.join(f'{m * 1000:.0f}' for m in r['repeat_medians'])} | {r['tokens_per_second']:,.0f} | "
            f"{r['tokens_per_second'] / a32['tokens_per_second']:.2f}× | {r['tokens_per_second'] / a16['tokens_per_second']:.2f}× | "
            f"{r['model_flops_per_second'] / 1e9:.0f} | {100 * r['mfu_bf16_peak']:.0f} % | {r['other_load_cores']:.2f} |"
        )
    comp = _row(rows, "course, --compile")
    targets = []
    for what, got, want in [
        ("course default vs anchor fp32", ours["tokens_per_second"] / a32["tokens_per_second"], TARGET_VS_ANCHOR_FP32),
        ("course default vs anchor bf16", ours["tokens_per_second"] / a16["tokens_per_second"], TARGET_VS_ANCHOR_BF16),
    ]:
        targets.append(f"| {what} | ≥ {want:.2f}× | {got:.2f}× | {'met' if got >= want else '**missed**'} |")
    targets.append(f"| course default MFU | ≥ {100 * TARGET_MFU:.0f} % | {100 * ours['mfu_bf16_peak']:.0f} % | "
                   f"{'met' if ours['mfu_bf16_peak'] >= TARGET_MFU else '**missed**'} |")
    if comp:
        targets.append(f"| (opt-in) course --compile MFU | ≥ {100 * TARGET_MFU:.0f} % | {100 * comp['mfu_bf16_peak']:.0f} % | "
                       f"{'met' if comp['mfu_bf16_peak'] >= TARGET_MFU else '**missed**'} |")
    prof = info["profile"]
    ptable = ["| operator | ms per step | calls per step |", "|---|---:|---:|"]
    for e in prof["top_ops"]:
        ptable.append(f"| `{e['op']}` | {e['ms_per_step']:.1f} | {e['calls_per_step']:.0f} |")
    mm = sum(e["ms_per_step"] for e in prof["top_ops"] if e["op"] in ("aten::mm", "aten::addmm", "aten::bmm"))
    matmul_speed = info["flops_per_token"] * info["batch_size"] * info["context_length"] / max(mm / 1e3, 1e-9)
    compile_line = ""
    if comp and comp.get("compile_seconds"):
        cs = [c for c in comp["compile_seconds"] if c is not None]
        saved = ours["step_seconds_median"] - comp["step_seconds_median"]
        pays = (f"It saves {saved * 1000:.0f} ms a step, so it pays off after about {statistics.median(cs) / saved:,.0f} steps"
                if saved > 0 else
                f"Its steps were not faster than the default eager steps here ({comp['step_seconds_median'] * 1000:.0f} vs "
                f"{ours['step_seconds_median'] * 1000:.0f} ms), so on this machine it does not pay off")
        compile_line = (f"\n`--compile` (opt-in) first compiles: its first step took {min(cs):.0f}–{max(cs):.0f} s (from an empty "
                        f"compiler cache every time; a warm cache in `/tmp/torchinductor_$USER` cuts that to a few seconds). {pays}.\n")
    return f"""# The course's pretraining loop vs the best-known course's, with MFU

{{header}}
- model FLOPs per token (training, 6·N + 12·L·T·d, see `gpt/speed.py`): {info['flops_per_token'] / 1e6:.1f} M
- measured peak matmul speed (2048×2048 @ 2048×2048, best of 3): bf16 {peak16 / 1e9:.0f} GFLOP/s, fp32 {peak32 / 1e9:.0f} GFLOP/s
  (before the run: {info['peak_flops_before_after']['before']['bf16'] / 1e9:.0f} / {info['peak_flops_before_after']['before']['fp32'] / 1e9:.0f}, after: {info['peak_flops_before_after']['after']['bf16'] / 1e9:.0f} / {info['peak_flops_before_after']['after']['fp32'] / 1e9:.0f})

Same shapes for both (V = 4,096, d = 192, 4 layers, 3 heads), batch {info['batch_size']} × {info['context_length']} tokens, random token ids.
"anchor" is `bench/anchor_gpt.py`, a re-implementation of the best-known course's GPT and training loop in its
style (separate q/k/v layers, its own LayerNorm and GELU modules, masked softmax, untied output layer, DataLoader,
AdamW, no clipping); "course" is `gpt.train.pretrain` (clipping, the learning-rate schedule and a `loss.item()` every
step included). Each configuration ran {info['repeats']} times in its own process, interleaved; each process timed
{info['steps_timed']} steps after {info['warmup_steps']} warmup steps; ms/step is the median of the per-process medians.

{chr(10).join(table)}

## Targets

| target | wanted | measured | |
|---|---|---|---|
{chr(10).join(targets)}
{compile_line}
## Where the default step's time goes

`torch.profiler` over {5} default course steps ({prof['precision']}; {prof['profiled_step_ms']:.0f} ms per step
under the profiler, {prof['self_cpu_ms_per_step']:.0f} ms of operator time). The top operators by their own time:

{chr(10).join(ptable)}

The matrix multiplications (`mm`, `addmm`, `bmm`: {mm:.0f} ms per step) are the work MFU counts: the step's
{info['flops_per_token'] * info['batch_size'] * info['context_length'] / 1e9:.1f} GFLOP in {mm:.0f} ms is {matmul_speed / 1e9:.0f} GFLOP/s, {100 * matmul_speed / peak16:.0f} % of the measured bf16 peak.
The other {prof['self_cpu_ms_per_step'] - mm:.0f} ms of operator time (the casts between bf16 and fp32 that autocast inserts, GELU and its
gradient, softmax, LayerNorm, the loss, the optimizer) count no model FLOPs: they are what keeps MFU below
what the matmuls alone reach. Under the profiler a step also runs slower than without it.
"""


def plot(info: dict, rows: list[dict], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a32, a16 = _row(rows, "anchor, fp32"), _row(rows, "anchor, bf16")
    fig, ax = plt.subplots(figsize=(8, 3.6))
    labels = [r["label"] for r in rows][::-1]
    vals = [r["tokens_per_second"] for r in rows][::-1]
    colors = ["#999999" if r["model"] == "anchor" else "#1f77b4" for r in rows][::-1]
    bars = ax.barh(labels, vals, color=colors)
    for bar, r in zip(bars, rows[::-1]):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {bar.get_width():,.0f}  (MFU {100 * r['mfu_bf16_peak']:.0f} %)",
                va="center", fontsize=8)
    for x, text in [(TARGET_VS_ANCHOR_FP32 * a32["tokens_per_second"], "2.0× anchor fp32"),
                    (TARGET_VS_ANCHOR_BF16 * a16["tokens_per_second"], "1.25× anchor bf16"),
                    (TARGET_MFU * info["peak_flops"]["bf16"] / info["flops_per_token"], "60 % MFU")]:
        ax.axvline(x, color="#d62728", lw=0.8, ls="--")
        ax.text(x, len(rows) - 0.4, text, rotation=90, va="top", ha="right", fontsize=7, color="#d62728")
    ax.set_xlabel("training tokens per second (2-core CPU, batch 16 × 256)")
    ax.set_xlim(0, max(vals + [TARGET_MFU * info["peak_flops"]["bf16"] / info["flops_per_token"]]) * 1.35)
    ax.set_title("Pretraining speed: the course's loop vs the anchor's (dashed: the targets)")
    fig.tight_layout()
    fig.savefig(out_dir / "vs_reference.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
