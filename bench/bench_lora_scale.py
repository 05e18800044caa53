"""Where LoRA's promise holds: full fine-tuning vs LoRA training steps from the course model to GPT-2 large.

For each model shape (the course model, gpt2-small, gpt2-medium, gpt2-large; random weights, which
do not change the cost) the course's classifier (:class:`gpt.classifier.GPTClassifier`: the GPT body
plus a 2-class head on the last token) is trained for a few steps on random token ids, batch 4 × 128
tokens, bf16 autocast, AdamW, gradient clipping, with every parameter trainable (``full``) or with LoRA
r=8 on every Linear layer of the blocks and the head trainable (``lora``). Each (shape, mode) runs in
its own process, modes interleaved, so the runs do not share caches or allocator state.

Recorded per run: the median step time over the timed steps (after warm-up steps), trainable
parameters, and memory as tensor bytes: the parameters, the gradients, the optimizer state (all
exact), and the peak of the memory the allocator handed out during one training step, read from
``torch.profiler``'s memory events (``step_peak_bytes``: activations, casts, gradients and optimizer
temporaries); ``training_bytes`` = parameters + optimizer state + ``step_peak_bytes`` (gradients are
allocated during the step, so they are in the peak). Results: ``bench/results/lora_scale.{md,json,png}``.

    python bench/bench_lora_scale.py                       # all four shapes (~10 min on 2 cores)
    python bench/bench_lora_scale.py --shapes course-tiny   # the smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import BUSY, RESULTS, OtherLoad, peak_step_bytes, run_info, write_results  # noqa: E402

SHAPES = ("course", "gpt2-small", "gpt2-medium", "gpt2-large")
MODES = ("full", "lora")


def build(shape: str, mode: str, r: int, seq: int):
    from gpt.classifier import GPTClassifier, set_trainable
    from gpt.lora import apply_lora
    from gpt.model import GPT, GPTConfig

    torch.manual_seed(0)
    config = GPTConfig.from_preset(shape, context_length=max(seq, 8))
    model = GPTClassifier(GPT(config))
    if mode == "full":
        set_trainable(model, "full")
    else:
        apply_lora(model, r=r, lora_alpha=2 * r, train_head=True)
    return model


def child(shape: str, mode: str, r: int, batch: int, seq: int, steps: int, warmup: int, precision: str) -> dict:
    from gpt.runtime.meters import optimizer_state_bytes
    from gpt.model import count_parameters
    from gpt.runtime.device import autocast, resolve_precision
    from gpt.train import make_optimizer

    device = torch.device("cpu")
    precision = resolve_precision(precision, device)
    model = build(shape, mode, r, seq).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(model, 1e-4, 0.0)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, model.config.vocab_size, (batch, seq), generator=g)
    y = torch.randint(0, 2, (batch,), generator=g)

    def step():
        with autocast(device, precision):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    times = []
    with OtherLoad() as load:
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            step()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    opt.zero_grad(set_to_none=True)
    peak = peak_step_bytes(step)  # after the timed steps: the optimizer state exists, as in every later step
    n_params = count_parameters(model)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    opt_bytes = optimizer_state_bytes(opt)
    return {
        "shape": shape, "mode": mode, "r": r if mode == "lora" else None, "precision": precision,
        "batch": batch, "seq": seq, "steps_timed": steps, "warmup_steps": warmup,
        "parameters": n_params, "trainable_params": count_parameters(model, trainable_only=True),
        "step_seconds_median": statistics.median(times), "step_seconds_min": min(times), "step_seconds_max": max(times),
        "parameter_bytes": param_bytes, "gradient_bytes": sum(p.numel() * p.element_size() for p in params),
        "optimizer_state_bytes": opt_bytes, "step_peak_bytes": peak, "training_bytes": param_bytes + opt_bytes + peak,
        "other_load_cores": load.cores,
    }


def _fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


# Targets: LoRA's training memory at most 0.4x full at gpt2-medium, and step-time ratios no worse than
# those measured before the LoRA path stopped saving a weight-sized copy (29 November 2026, AMD EPYC, bf16).
MEMORY_TARGET = ("gpt2-medium", 0.4)
STEP_RATIO_BEFORE = {"course": 0.86, "gpt2-small": 0.54, "gpt2-medium": 0.56, "gpt2-large": 0.60}


def targets(rows: list[dict]) -> list[str]:
    """One line per target: the measured ratio, the target, met or not."""
    by = {(r["shape"], r["mode"]): r for r in rows}
    ratio = lambda s, k: by[(s, "lora")][k] / by[(s, "full")][k]  # noqa: E731
    lines = []
    shape, limit = MEMORY_TARGET
    if (shape, "full") in by and (shape, "lora") in by:
        m = ratio(shape, "training_bytes")
        lines.append(f"- memory ratio at {shape}: {m:.2f} (target ≤ {limit}: {'met' if m <= limit else '**not met**'})")
    for s, before in STEP_RATIO_BEFORE.items():
        if (s, "full") in by and (s, "lora") in by:
            t = ratio(s, "step_seconds_median")
            lines.append(f"- step ratio at {s}: {t:.2f} (before: {before:.2f}; {'no worse' if t <= before + 0.03 else '**worse**'}, "
                         "differences within 0.03 read as noise)")
    return lines


def render(info: dict, rows: list[dict]) -> str:
    by = {(r["shape"], r["mode"]): r for r in rows}
    shapes = [s for s in dict.fromkeys(r["shape"] for r in rows) if (s, "full") in by and (s, "lora") in by]
    lines = [
        "# LoRA vs full fine-tuning, from the course model to GPT-2 large",
        "",
        "{header}",
        f"Training steps of the course's classifier (GPT body + 2-class head on the last token) on random tokens, "
        f"batch {info['batch']} × {info['seq']}, {info['precision']} autocast, AdamW, clipping; LoRA r={info['r']} "
        f"(lora_alpha {2 * info['r']}) on every Linear of the blocks, head trainable. Median of {info['steps']} timed steps "
        f"after {info['warmup']} warm-up steps, each (shape, mode) in its own process. Memory: tensor bytes "
        "(parameters + optimizer state + the allocator's peak during one step, which holds the gradients, "
        "activations and casts), not process RSS.",
        "",
        "| shape | parameters | LoRA trainable | full step (s) | LoRA step (s) | step ratio LoRA / full "
        "| full memory | LoRA memory | memory ratio | full gradients + optimizer | LoRA gradients + optimizer |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in shapes:
        f, lo = by[(s, "full")], by[(s, "lora")]
        lines.append(
            f"| {s} | {f['parameters']:,} | {lo['trainable_params']:,} ({100 * lo['trainable_params'] / lo['parameters']:.2f} %) "
            f"| {f['step_seconds_median']:.3f} | {lo['step_seconds_median']:.3f} | **{lo['step_seconds_median'] / f['step_seconds_median']:.2f}** "
            f"| {_fmt_bytes(f['training_bytes'])} | {_fmt_bytes(lo['training_bytes'])} | **{lo['training_bytes'] / f['training_bytes']:.2f}** "
            f"| {_fmt_bytes(f['gradient_bytes'] + f['optimizer_state_bytes'])} | {_fmt_bytes(lo['gradient_bytes'] + lo['optimizer_state_bytes'])} |"
        )
    lines += ["", "Targets:", "", *targets(rows), "", "![step and memory ratio against model size](lora_scale.png)", ""]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r["shape"], r["mode"]): r for r in rows}
    shapes = [s for s in dict.fromkeys(r["shape"] for r in rows) if (s, "full") in by and (s, "lora") in by]
    n = [by[(s, "full")]["parameters"] for s in shapes]
    time_ratio = [by[(s, "lora")]["step_seconds_median"] / by[(s, "full")]["step_seconds_median"] for s in shapes]
    mem_ratio = [by[(s, "lora")]["training_bytes"] / by[(s, "full")]["training_bytes"] for s in shapes]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(n, time_ratio, "o-", label="step time, LoRA / full")
    ax.plot(n, mem_ratio, "s-", label="training memory, LoRA / full")
    for x, t, s in zip(n, time_ratio, shapes):
        ax.annotate(s, (x, t), textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax.axhline(1.0, color="gray", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_ylim(0, max(1.1, max(time_ratio + mem_ratio) * 1.1))
    ax.set_xlabel("model parameters (log scale)")
    ax.set_ylabel("LoRA / full fine-tuning")
    ax.set_title("LoRA r=8 vs full fine-tuning: where the saving appears")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), help="GPTConfig presets")
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=4, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--out", default=None, help="results folder (default bench/results)")
    p.add_argument("--child", nargs=2, metavar=("SHAPE", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        shape, mode = args.child
        print(json.dumps(child(shape, mode, args.r, args.batch, args.seq, args.steps, args.warmup, args.precision)))
        return 0

    from gpt.runtime.device import resolve_precision

    info = run_info()
    info.update(precision=resolve_precision(args.precision, torch.device("cpu")), r=args.r, batch=args.batch, seq=args.seq,
                steps=args.steps, warmup=args.warmup)
    rows = []
    for shape in args.shapes:
        for mode in MODES:
            cmd = [sys.executable, __file__, "--child", shape, mode, "--r", str(args.r), "--batch", str(args.batch),
                   "--seq", str(args.seq), "--steps", str(args.steps), "--warmup", str(args.warmup), "--precision", args.precision]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            print(f"{shape:12s} {mode:5s} {row['step_seconds_median']:8.3f} s/step  memory {_fmt_bytes(row['training_bytes']):>10s}"
                  f"  trainable {row['trainable_params']:,}  (other load {row['other_load_cores']:.2f} cores)", flush=True)
    info["other_load_cores"] = max(r["other_load_cores"] for r in rows)
    out_dir = Path(args.out) if args.out else RESULTS
    md, js = write_results("lora_scale", info, rows, render(info, rows), out_dir)
    plot(rows, out_dir / "lora_scale.png")
    if info["other_load_cores"] > BUSY:
        print(f"warning: other processes used up to {info['other_load_cores']:.2f} cores while measuring")
    print(f"wrote {md}, {js} and {out_dir / 'lora_scale.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
