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
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BUSY, OtherLoad, run_info, time_training_when_quiet, write_results  # noqa: E402

from gpt.model import GPT, GPTConfig, count_parameters  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--big-vocab-steps", type=int, default=8, help="timed steps for the 50,257-token rows (seconds per step)")
    p.add_argument("--repeats", type=int, default=3, help="measurements per row, interleaved; a row's step time is the median of their medians")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--preset", default="course")
    p.add_argument("--out", default=None, help="results folder (default bench/results)")
    p.add_argument("--render-only", metavar="JSON", help="rewrite the .md from an existing results .json (no measuring)")
    args = p.parse_args(argv)
    if args.render_only:
        import json

        doc = json.loads(Path(args.render_only).read_text())
        rows = doc.pop("rows")
        return finish(doc, rows, args.out or Path(args.render_only).parent)

    runs = [
        # (label, config overrides, precision)
        ("course, bf16, sdpa", {"attn_impl": "sdpa"}, "bf16"),
        ("course, bf16, explicit", {"attn_impl": "explicit"}, "bf16"),
        ("course, fp32, sdpa", {"attn_impl": "sdpa"}, "fp32"),
        ("course, fp32, explicit", {"attn_impl": "explicit"}, "fp32"),
        ("course + GPT-2 vocab (50,257), bf16, sdpa", {"vocab_size": 50257, "attn_impl": "sdpa"}, "bf16"),
        ("course + GPT-2 vocab (50,257), fp32, sdpa", {"vocab_size": 50257, "attn_impl": "sdpa"}, "fp32"),
    ]
    info = run_info()
    tries = {label: [] for label, _, _ in runs}
    with OtherLoad() as load:
        for rep in range(args.repeats):  # interleaved: every row once, then again, so drift hits all rows alike
            for label, overrides, precision in runs:
                config = GPTConfig.from_preset(args.preset, context_length=args.context, **overrides)
                steps = args.big_vocab_steps if config.vocab_size > 10_000 else args.steps
                r = time_training_when_quiet(config, steps, args.warmup, args.batch_size, precision)
                tries[label].append(r)
                print(f"repeat {rep + 1}  {label:45s} {r['tokens_per_second']:9.0f} tokens/s  ({r['step_seconds_median'] * 1000:.0f} ms/step)", flush=True)
    rows = []
    for label, overrides, precision in runs:
        config = GPTConfig.from_preset(args.preset, context_length=args.context, **overrides)
        rs = tries[label]
        median = statistics.median(r["step_seconds_median"] for r in rs)
        r = dict(rs[0])
        r.update(
            label=label,
            vocab_size=config.vocab_size,
            attn_impl=config.attn_impl,
            parameters=count_parameters(GPT(config)),
            repeat_medians=[x["step_seconds_median"] for x in rs],
            step_seconds_median=median,
            step_seconds_min=min(x["step_seconds_min"] for x in rs),
            step_seconds_max=max(x["step_seconds_max"] for x in rs),
            tokens_per_second=args.batch_size * args.context / median,
            other_load_cores=max(x["other_load_cores"] for x in rs),
            tries=[x["tries"] for x in rs],
        )
        rows.append(r)
    info["other_load_cores_whole_run"] = load.cores  # includes the pauses between retries
    info["other_load_cores"] = max(r["other_load_cores"] for r in rows)  # during the timed measurements
    info["preset"] = args.preset
    return finish(info, rows, args.out)


def finish(info: dict, rows: list[dict], out) -> int:
    body = render(info, rows)
    md, js = write_results("train_speed", info, rows, body, out)
    print(f"wrote {md} and {js}")
    if info["other_load_cores"] > BUSY:
        print(f"warning: other processes used {info['other_load_cores']:.2f} cores during a measurement; the numbers are not valid", file=sys.stderr)
    return 0


def render(info: dict, rows: list[dict]) -> str:
    b, t = rows[0]["batch_size"], rows[0]["context_length"]

    base = rows[0]["tokens_per_second"]
    table = [
        "| configuration | parameters | precision | attention | timed steps | ms/step (median) | min–max ms | tokens/s | vs. bf16 + sdpa | other load (cores) |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        table.append(
            f"| {r['label']} | {r['parameters']:,} | {r['precision']} | {r['attn_impl']} | {r['steps_timed']} | "
            f"{r['step_seconds_median'] * 1000:.0f} | {r['step_seconds_min'] * 1000:.0f}–{r['step_seconds_max'] * 1000:.0f} | "
            f"{r['tokens_per_second']:,.0f} | {r['tokens_per_second'] / base:.2f}× | "
            f"{r['other_load_cores']:.2f}{' (not valid)' if r['other_load_cores'] > BUSY else ''} |"
        )

    def tps(label):
        return next(r["tokens_per_second"] for r in rows if r["label"] == label)

    small, big = tps("course, bf16, sdpa"), tps("course + GPT-2 vocab (50,257), bf16, sdpa")
    body = f"""# Training speed of the `{info['preset']}` model

{{header}}
Each row runs the course's training loop (`gpt.train.pretrain`: forward, cross-entropy, backward,
gradient clipping at 1.0, AdamW) with batch {b} × context {t} on random token ids:
{rows[0]['warmup_steps']} warmup steps, then {rows[0]['steps_timed']} timed steps ({rows[-1]['steps_timed']} for the 50,257-token rows), repeated
{len(rows[0].get('repeat_medians', [0]))} times, interleaved (every row once, then every row again, ...); a row's step time is the median of its
repeats' median step times, and tokens/s = {b * t:,} / that.
bf16 means `torch.autocast(bfloat16)` (the weights and the optimizer stay fp32); fp32 runs without autocast.
A measurement is taken again (up to 4 tries, `tries` in the JSON) when other processes used more than
{BUSY} cores during it. Step times on a shared 2-core machine drift by 10–15 % from minute to minute
(see the per-repeat medians in the JSON), which the interleaving spreads over all rows alike.
The default attention, `attn_impl="auto"`, is the explicit softmax under bf16 and sdpa in fp32.

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
    return body


if __name__ == "__main__":
    raise SystemExit(main())
