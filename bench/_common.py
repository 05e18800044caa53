"""Shared helpers for the benchmark scripts: timing a training run and writing results files."""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import statistics
import sys
import time as _time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def command_line() -> str:
    """The command that is running, with the environment variables that change its result."""
    env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ("GPT_DATA_MIRROR", "OMP_NUM_THREADS") if os.environ.get(k))
    cmd = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    return f"{env} {cmd}".strip()


def run_info() -> dict:
    from gpt.teaching.reference import machine_description
    from gpt.runtime.device import cpu_has_fast_bf16

    return {
        "command": command_line(),
        "machine": machine_description(),
        "torch_threads": torch.get_num_threads(),
        "cpu_has_fast_bf16": cpu_has_fast_bf16(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds spent by all processes on this machine since boot, and the part spent by processes
    running under ``nice`` (from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields[:8]) - idle) / tick, fields[1] / tick


class OtherLoad:
    """Measures how much CPU *other* processes used while the benchmark ran, in cores (0 = the
    benchmark had the machine to itself). Use as a context manager; read ``.cores`` afterwards, and
    ``.niced_cores``: the part of it used by processes under ``nice``, which yield the CPU to the benchmark
    (they use what it leaves idle)."""

    def __enter__(self):
        self.t0, self.own0 = _time.perf_counter(), _own_cpu_seconds()
        self.busy0, self.nice0 = _cpu_seconds()
        return self

    def __exit__(self, *exc):
        wall = _time.perf_counter() - self.t0
        busy, nice = _cpu_seconds()
        other = (busy - self.busy0) - (_own_cpu_seconds() - self.own0)
        self.cores = max(0.0, other / wall) if wall > 0 else 0.0
        self.niced_cores = min(self.cores, max(0.0, (nice - self.nice0) / wall)) if wall > 0 else 0.0


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def time_training(config, steps: int, warmup: int, batch_size: int, precision: str, seed: int = 0, compile: bool = False) -> dict:
    """Time ``warmup + steps`` steps of the course's own training loop (:func:`gpt.train.pretrain`, with
    ``TrainConfig.compile``) on random token ids (the speed does not depend on which tokens they are).
    Returns per-step statistics over the ``steps`` timed steps (the warmup steps are not counted), the
    timed step times themselves, and the compile time of a compiled run."""
    from gpt.model import GPT
    from gpt.train import pretrain
    from gpt.train_config import TrainConfig

    rng = np.random.default_rng(seed)
    n_tokens = max(200_000, 4 * config.context_length)
    train_ids = rng.integers(0, config.vocab_size, n_tokens).astype(np.int64)
    val_ids = rng.integers(0, config.vocab_size, 4 * config.context_length).astype(np.int64)
    total = warmup + steps
    cfg = TrainConfig(
        max_steps=total,
        batch_size=batch_size,
        warmup_steps=min(10, total),
        eval_interval=total + 1,  # only the final evaluation, after the last timed step
        eval_batches=1,
        precision=precision,
        device="cpu",
        seed=seed,
        compile=compile,
    )
    torch.manual_seed(seed)
    model = GPT(config)
    with OtherLoad() as load:
        hist = pretrain(model, train_ids, val_ids, cfg, progress=False)
    ends = [0.0] + hist["seconds"]
    step_s = [b - a for a, b in zip(ends[:-1], ends[1:])][warmup:]
    tokens_per_step = batch_size * config.context_length
    median = statistics.median(step_s)
    return {
        "precision": hist["precision"],
        "steps_timed": steps,
        "warmup_steps": warmup,
        "batch_size": batch_size,
        "context_length": config.context_length,
        "step_seconds": step_s,
        "compile_seconds": hist.get("compile_seconds"),
        "step_seconds_median": median,
        "step_seconds_mean": statistics.fmean(step_s),
        "step_seconds_min": min(step_s),
        "step_seconds_max": max(step_s),
        "tokens_per_second": tokens_per_step / median,
        "final_train_loss": hist["train_loss"][-1],
        "other_load_cores": load.cores,
    }


BUSY = 0.2  # cores used by other processes above which a measurement is not valid


def time_training_when_quiet(config, steps, warmup, batch_size, precision, tries: int = 4, wait_s: float = 60.0) -> dict:
    """:func:`time_training`, repeated (after a pause) while other processes used more than ``BUSY``
    cores during the measurement; returns the last try, with ``tries`` recording how many it took."""
    for i in range(1, tries + 1):
        r = time_training(config, steps, warmup, batch_size, precision)
        r["tries"] = i
        if r["other_load_cores"] <= BUSY:
            break
        print(f"  (other processes used {r['other_load_cores']:.2f} cores; measuring again in {wait_s:.0f} s)", flush=True)
        if i < tries:
            _time.sleep(wait_s)
    return r


def write_results(name: str, info: dict, rows: list[dict], markdown_body: str, out_dir: Path | None = None) -> tuple[Path, Path]:
    """Write ``<name>.json`` (info + rows) and ``<name>.md`` (a header with the command, machine and date, then the body)."""
    out_dir = Path(out_dir) if out_dir else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / f"{name}.json"
    md = out_dir / f"{name}.md"
    js.write_text(json.dumps({**info, "rows": rows}, indent=1) + "\n")
    load = info.get("other_load_cores")
    header = [
        f"- command: `{info['command']}`",
        f"- machine: {info['machine']} ({info['torch_threads']} torch threads; fast bf16 on this CPU: {info['cpu_has_fast_bf16']})",
        f"- date: {info['date_utc']}",
        f"- CPU used by other processes while measuring: {load:.2f} cores (the highest average over any one measurement; each row's figure is in the JSON)"
        + (" (**the machine was busy: these numbers are not valid**)" if load is not None and load > BUSY else ""),
        "",
    ]
    md.write_text(markdown_body.replace("{header}", "\n".join(header)))
    return md, js


def peak_step_bytes(step) -> int:
    """The largest amount of tensor memory allocated (and not yet freed) during ``step()``, from the
    profiler's allocator events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    # Each op's own allocations minus its own frees, and the frees outside any op ("[memory]" events),
    # in the order they happened; the running sum is the memory the step holds on top of what existed before.
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return int(peak)
