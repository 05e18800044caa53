"""Training speed of the course model on this machine: tokens per second of real training steps.

Compares bf16 autocast with fp32, PyTorch's fused attention (``sdpa``) with the explicit masked
softmax the notebooks teach, and the course vocabulary (4,096 tokens) with GPT-2's (50,257).
Every configuration runs the course's own training loop (``gpt.train.pretrain``: forward, loss,
backward, gradient clipping, AdamW) for a few warmup steps, then the timed steps; the median step
time gives tokens/s = batch_size × context_length / median step time.

    python bench/bench_train_speed.py                # the real run (a few minutes on 2 cores)
    python bench/bench_train_speed.py --steps 2 --warmup 1 --out /tmp/bench   # smoke test

Writes bench/results/train_speed.md and .json. Run it on an otherwise idle machine: the results
file records how much CPU other processes used meanwhile.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import OtherLoad, run_info, time_training, write_results  # noqa: E402

from gpt.model import GPT, GPTConfig, count_parameters  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--preset", default="course")
    p.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = p.parse_args(argv)

    runs = [
        # (label, config overrides, precision)
        ("course, bf16, sdpa", {}, "bf16"),
        ("course, bf16, explicit", {"attn_impl": "explicit"}, "bf16"),
        ("course, fp32, sdpa", {}, "fp32"),
        ("course, fp32, explicit", {"attn_impl": "explicit"}, "fp32"),
        ("course + GPT-2 vocab (50,257), bf16, sdpa", {"vocab_size": 50257}, "bf16"),
        ("course + GPT-2 vocab (50,257), fp32, sdpa", {"vocab_size": 50257}, "fp32"),
    ]
    info = run_info()
    rows = []
    with OtherLoad() as load:
        for label, overrides, precision in runs:
            config = GPTConfig.from_preset(args.preset, context_length=args.context, **overrides)
            r = time_training(config, args.steps, args.warmup, args.batch_size, precision)
            r.update(
                label=label,
                vocab_size=config.vocab_size,
                attn_impl=config.attn_impl,
                parameters=count_parameters(GPT(config)),
            )
            rows.append(r)
            print(f"{label:45s} {r['tokens_per_second']:9.0f} tokens/s  ({r['step_seconds_median'] * 1000:.0f} ms/step)", flush=True)
    info["other_load_cores"] = load.cores
    info["preset"] = args.preset

    base = rows[0]["tokens_per_second"]
    table = [
        "| configuration | parameters | precision | attention | ms/step (median) | min–max ms | tokens/s | vs. bf16 + sdpa |",
        "|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        table.append(
            f"| {r['label']} | {r['parameters']:,} | {r['precision']} | {r['attn_impl']} | "
            f"{r['step_seconds_median'] * 1000:.0f} | {r['step_seconds_min'] * 1000:.0f}–{r['step_seconds_max'] * 1000:.0f} | "
            f"{r['tokens_per_second']:,.0f} | {r['tokens_per_second'] / base:.2f}× |"
        )

    def tps(label):
        return next(r["tokens_per_second"] for r in rows if r["label"] == label)

    small, big = tps("course, bf16, sdpa"), tps("course + GPT-2 vocab (50,257), bf16, sdpa")
    body = f"""# Training speed of the `{args.preset}` model

{{header}}
Each row runs the course's training loop (`gpt.train.pretrain`: forward, cross-entropy, backward,
gradient clipping at 1.0, AdamW) with batch {args.batch_size} × context {args.context} on random token ids:
{args.warmup} warmup steps, then {args.steps} timed steps; tokens/s = {args.batch_size * args.context:,} / median step time.
bf16 means `torch.autocast(bfloat16)` (the weights and the optimizer stay fp32); fp32 runs without autocast.

{chr(10).join(table)}

## What it shows

* **Precision:** bf16 autocast runs at {tps('course, bf16, sdpa') / tps('course, fp32, sdpa'):.2f}× the speed of fp32 (with sdpa).
* **Attention:** the explicit masked softmax runs at {tps('course, bf16, explicit') / tps('course, bf16, sdpa'):.2f}× (bf16) and
  {tps('course, fp32, explicit') / tps('course, fp32, sdpa'):.2f}× (fp32) the speed of the fused `scaled_dot_product_attention`.
* **Vocabulary:** the same network with GPT-2's 50,257-token vocabulary has
  {rows[4]['parameters'] / rows[0]['parameters']:.1f}× the parameters (the embedding and the tied output layer grow with the
  vocabulary) and trains at {big / small:.2f}× the speed (bf16): the output layer and the softmax over 50,257 tokens
  dominate a model this small. The course therefore trains its own 4,096-token BPE; see `bpe.md` for
  what that costs in characters per token.
"""
    md, js = write_results("train_speed", info, rows, body, args.out)
    print(f"wrote {md} and {js}")
    if load.cores > 0.2:
        print(f"warning: other processes used {load.cores:.2f} cores during the run; the numbers are not valid", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
