"""What LoRA costs and saves per step, and whether a merged model is as fast as the base model.

On the reference checkpoint turned into the spam classifier, with real batches of the balanced
training split (16 messages, length-bucketed and right-padded to a multiple of 16 tokens, with the
attention ``FinetuneConfig.attn_impl`` picks, as ``gpt.finetune.finetune`` makes them):

* **training step time** (forward, loss, backward, gradient clipping, AdamW step; bf16 autocast where
  the CPU supports it, as in fine-tuning) of full fine-tuning, the head only, and LoRA (every Linear
  in the blocks, head trainable) at several ranks; median over the timed steps, the same batches for
  every configuration; also the optimizer-state bytes;
* **inference** over the 300-message balanced test split in fp32: the base classifier, the LoRA model
  unmerged, and the same model merged (median of repeats); and the largest absolute difference between
  merged and unmerged logits (the LoRA factors are randomised first, so the update is not zero).

    python bench/bench_lora.py                       # the real run (about 3 minutes on 2 cores)
    python bench/bench_lora.py --steps 3 --warmup 1 --repeats 1 --out /tmp/bench   # smoke test

Writes bench/results/lora.md and .json. Run it on an otherwise idle machine: the results file records
how much CPU other processes used meanwhile. Needs the SMS data (``GPT_DATA_MIRROR`` offline).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import BUSY, OtherLoad, peak_step_bytes, run_info, write_results  # noqa: E402

from gpt.classifier import classifier_from_checkpoint, encode_messages, pad_batch, predict_ids, set_trainable  # noqa: E402
from gpt.finetune import bucketed_batches  # noqa: E402
from gpt.lora import apply_lora, lora_layers, merge_lora  # noqa: E402
from gpt.runtime.meters import optimizer_state_bytes  # noqa: E402
from gpt.sms import label_ids, load_splits  # noqa: E402
from gpt.model import count_parameters  # noqa: E402
from gpt.tokenizer import course_tokenizer  # noqa: E402
from gpt.runtime.device import autocast, resolve_precision
from gpt.train import make_optimizer  # noqa: E402
from gpt.finetune_config import FinetuneConfig  # noqa: E402

# Batches and attention as fine-tuning makes them (padded lengths rounded up to a multiple, attention by precision).
RECIPE = FinetuneConfig()


def training_batches(n: int, batch_size: int, seed: int = 0):
    tok = course_tokenizer()
    train = load_splits()["train"]
    ids, _ = encode_messages(train["text"].tolist(), tok, 256)
    y = label_ids(train["label"])
    gen = torch.Generator().manual_seed(seed)
    batches = bucketed_batches([len(s) for s in ids], batch_size, 8, gen)[:n]
    out = []
    for b in batches:
        x, lengths = pad_batch([ids[i] for i in b], tok.eot_token, pad_to_multiple_of=RECIPE.pad_to_multiple_of)
        out.append((x, lengths, torch.from_numpy(y[b])))
    return out


def time_steps(model, batches, warmup: int, precision: str, lr: float = 1e-3) -> dict:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(model, lr, 0.0)
    device = torch.device("cpu")
    model.train()
    times = []
    # Two passes over the same batches, only the second timed: the first creates the matrix library's
    # kernels for every new shape (each batch has its own padded length), as epoch 1 of a real run does.
    for i, (x, lengths, y) in enumerate(list(batches) * 2):
        t0 = time.perf_counter()
        with autocast(device, precision):
            logits = model(x, lengths)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if i >= len(batches) + warmup:
            times.append(time.perf_counter() - t0)
    opt.zero_grad(set_to_none=True)
    x, lengths, y = max(batches, key=lambda b: b[0].numel())  # the largest batch: the step's peak memory

    def step():
        with autocast(device, precision):
            loss = F.cross_entropy(model(x, lengths).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    peak = peak_step_bytes(step)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return {
        "parameter_bytes": param_bytes,
        "step_peak_bytes": peak,
        "training_bytes": param_bytes + optimizer_state_bytes(opt) + peak,
        "step_seconds_median": statistics.median(times),
        "step_seconds_mean": statistics.fmean(times),
        "optimizer_state_bytes": optimizer_state_bytes(opt),
        "trainable_params": count_parameters(model, trainable_only=True),
    }


@torch.no_grad()
def time_inference(model, ids, pad_id, repeats: int) -> float:
    model.eval()
    predict_ids(model, ids, pad_id, pad_to_multiple_of=RECIPE.pad_to_multiple_of)  # warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict_ids(model, ids, pad_id, pad_to_multiple_of=RECIPE.pad_to_multiple_of)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="timed training steps per configuration")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=15, help="timed inference passes over the test split")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"], help="of the training steps")
    p.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = p.parse_args(argv)

    precision = resolve_precision(args.precision, torch.device("cpu"))
    batches = training_batches(args.warmup + args.steps, args.batch_size)
    info = run_info()
    info.update(precision=precision, steps=args.steps, warmup=args.warmup, batch_size=args.batch_size)
    rows = []
    with OtherLoad() as load:
        configs = [("full", None), ("head", None)] + [(f"lora-r{r}", r) for r in args.ranks]
        for label, rank in configs:
            model = classifier_from_checkpoint(seed=0, attn_impl=RECIPE.attn_impl)
            if rank is None:
                set_trainable(model, label)
            else:
                torch.manual_seed(0)
                apply_lora(model, r=rank, lora_alpha=2 * rank, train_head=True)
            with OtherLoad() as one:
                r = time_steps(model, batches, args.warmup, precision)
            r.update(kind="training step", label=label, other_load_cores=one.cores)
            rows.append(r)
            print(f"{label:10s} {1000 * r['step_seconds_median']:7.1f} ms/step  optimizer state {r['optimizer_state_bytes']:>10,} B", flush=True)

        # Inference: base vs LoRA unmerged vs merged, on the balanced test split.
        tok = course_tokenizer()
        test = load_splits()["test"]
        ids, _ = encode_messages(test["text"].tolist(), tok, 256)
        base = classifier_from_checkpoint(seed=0, attn_impl=RECIPE.attn_impl).eval()
        lora = copy.deepcopy(base)
        torch.manual_seed(1)
        apply_lora(lora, r=8, lora_alpha=16, train_head=True)
        with torch.no_grad():
            for _, layer in lora_layers(lora):
                layer.lora_B.weight.normal_(0, 0.02)  # a non-zero update, as after training
        lora.eval()
        x, lengths = pad_batch(ids, tok.eot_token)
        with torch.no_grad():
            unmerged_logits = lora(x, lengths)
        merged = merge_lora(copy.deepcopy(lora)).eval()
        with OtherLoad() as one:
            # Interleaved rounds (base, unmerged, merged, base, ...), so that drifts in the machine's
            # speed hit all three alike; median over the rounds.
            rounds = {"base": [], "unmerged": [], "merged": []}
            for _ in range(args.repeats):
                for key, m in (("base", base), ("unmerged", lora), ("merged", merged)):
                    rounds[key].append(time_inference(m, ids, tok.eot_token, 1))
            t_base, t_unmerged, t_merged = (statistics.median(rounds[k]) for k in ("base", "unmerged", "merged"))
            lora = merged
        with torch.no_grad():
            diff = (lora(x, lengths) - unmerged_logits).abs().max().item()
        for label, t in (("base model", t_base), ("LoRA r=8, unmerged", t_unmerged), ("LoRA r=8, merged", t_merged)):
            rows.append({"kind": "inference", "label": label, "seconds": t, "relative_to_base": t / t_base, "other_load_cores": one.cores})
            print(f"{label:20s} {t:.3f} s  ({t / t_base:.3f}x base)", flush=True)
        info["merged_vs_unmerged_max_abs_logit_diff"] = diff
        print(f"merged vs unmerged logits: max |diff| = {diff:.2e}")
    info["other_load_cores_whole_run"] = load.cores
    info["other_load_cores"] = max(r["other_load_cores"] for r in rows)
    return finish(info, rows, args.out)


def finish(info: dict, rows: list[dict], out) -> int:
    steps = [r for r in rows if r["kind"] == "training step"]
    full = next(r for r in steps if r["label"] == "full")
    lines = [
        "# LoRA: training-step cost and merged inference",
        "",
        "{header}",
        f"Training steps: reference classifier, batches of {info['batch_size']} real training messages, "
        f"{info['precision']} autocast, median of {info['steps']} steps (a second pass over the same batches, so every shape's kernels exist already; the first {info['warmup']} of that pass not counted).",
        "",
        "Training memory: tensor bytes (parameters + optimizer state + the allocator's peak during one step on the "
        "largest batch, which holds gradients, activations and casts; `torch.profiler` memory events), not process RSS.",
        "",
        "| configuration | trainable params | ms / step | step time vs full | optimizer state | vs full | training memory | vs full |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in steps:
        lines.append(
            f"| {r['label']} | {r['trainable_params']:,} | {1000 * r['step_seconds_median']:.1f} "
            f"| {r['step_seconds_median'] / full['step_seconds_median']:.2f}× | {r['optimizer_state_bytes']:,} B "
            f"| {100 * r['optimizer_state_bytes'] / full['optimizer_state_bytes']:.1f} % "
            f"| {r['training_bytes'] / 1e6:.1f} MB | {r['training_bytes'] / full['training_bytes']:.2f}× |"
        )
    lines += [
        "",
        "Inference over the 300-message balanced test split (fp32, batches of 64; interleaved rounds, median):",
        "",
        "| model | seconds | vs base |",
        "|---|---|---|",
    ]
    for r in rows:
        if r["kind"] == "inference":
            lines.append(f"| {r['label']} | {r['seconds']:.3f} | {r['relative_to_base']:.3f}× |")
    lines += ["", f"Merged vs unmerged logits (fp32): largest absolute difference {info['merged_vs_unmerged_max_abs_logit_diff']:.2e}.", ""]
    if info["other_load_cores"] > BUSY:
        lines.append("**Other processes used the CPU during the measurement: rerun on an idle machine.**")
    md, js = write_results("lora", info, rows, "\n".join(lines) + "\n", out)
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
