"""The reference checkpoint shipped with the package, and the model card that describes it."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import resources
from pathlib import Path

import torch

from ..io.files import atomic_write_text
from ..io.weights import REFERENCE_DIR, load_model, reference_path  # noqa: F401  (reference_path: also this module's, as before)
from ..runtime.device import cpu_has_fast_bf16, pick_device, resolve_precision


CARD_JSON = "model_card.json"


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    bf16 = "native bf16" if cpu_has_fast_bf16() else "no native bf16"  # what precision="auto" picks on a CPU
    return f"{cpu}, {os.cpu_count()} cores, {bf16}, torch {torch.__version__}, {platform.system()}"


def source_commit() -> str:
    """The commit of the checkout the package runs from (``git rev-parse HEAD``), with ``+changes`` when
    files under ``gpt/`` differ from it; ``"unknown"`` outside a git checkout."""

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "gpt"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def environment_record(precision: str | None = None) -> dict:
    """What a results folder records about the machine and code that made it: the CPU model and cores,
    whether the CPU has native bf16 (which decides ``precision="auto"``), torch, Python, the commit, and
    the precision the training steps ran in (``precision``, resolved from "auto" on this machine if not given)."""


    return {
        "machine": machine_description(),
        "cpu_native_bf16": cpu_has_fast_bf16(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "precision": precision or resolve_precision("auto", pick_device("cpu")),
        "commit": source_commit(),
    }


def reference_card() -> dict:
    return json.loads((resources.files("gpt") / "assets" / REFERENCE_DIR / CARD_JSON).read_text())


def load_reference(device="cpu", **config_overrides):
    """The course's pretrained reference GPT (see ``gpt/assets/reference/MODEL_CARD.md``)."""

    path = reference_path()
    if not path.exists():
        raise FileNotFoundError(f"the reference checkpoint {path} is missing from this installation")
    return load_model(path, device=device, **config_overrides)


def write_card(out_dir: Path, card: dict) -> None:
    """model_card.json plus a readable MODEL_CARD.md (each written atomically: temporary file, fsync, rename)."""
    out_dir = Path(out_dir)
    c = card
    lines = [
        f"# Model card: {c['name']}",
        "",
        f"A {c['parameters']:,}-parameter GPT (`{c['preset']}` preset: {c['config']['n_layer']} layers, "
        f"width {c['config']['n_embd']}, {c['config']['n_head']} heads, context {c['config']['context_length']}, "
        f"vocabulary {c['config']['vocab_size']}) pretrained from scratch on {len(c['corpus'])} public-domain "
        "Project Gutenberg books with the course's own command.",
        "",
        "| | |",
        "|---|---|",
        f"| command | `{c['command']}` |",
        f"| tokenizer | `{c['tokenizer']}` (fingerprint `{c['tokenizer_fingerprint']}`) |",
        f"| training tokens in corpus | {c['train_tokens_in_corpus']:,} (held out: last {c['val_fraction']:.0%} of each book, {c['val_tokens_in_corpus']:,} tokens) |",
        f"| tokens seen | {c['tokens_seen']:,} ({c['steps']} steps × {c['batch_size']} × {c['config']['context_length']}) |",
        f"| wall time | {c['wall_seconds'] / 60:.1f} min |",
        f"| machine | {c['machine']} |",
        f"| precision | {c['precision']} autocast |",
        f"| final train loss (mean of last 50 steps) | {c['final_train_loss']:.4f} |",
        f"| held-out loss (fp32, {c['heldout_eval_batches']} batches of {c['batch_size']}) | {c['heldout_loss_fp32']:.4f} |",
        f"| seed | {c['seed']} |",
        "",
        "## Corpus (sha256 of each file as fetched)",
        "",
        "| file | sha256 |",
        "|---|---|",
    ]
    lines += [f"| `{f}` | `{s}` |" for f, s in c["corpus"].items()]
    lines += ["", "No SMS message (the fine-tuning task's data) is part of the pretraining corpus.", ""]
    atomic_write_text(out_dir / CARD_JSON, json.dumps(card, indent=1) + "\n")
    atomic_write_text(out_dir / "MODEL_CARD.md", "\n".join(lines))
