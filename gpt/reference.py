"""The reference checkpoint shipped with the package, and the model card that describes it."""

from __future__ import annotations

import json
import os
import platform
from importlib import resources
from pathlib import Path

from .files import atomic_write_text

REFERENCE_DIR = "reference"
REFERENCE_FILE = "model.safetensors"
CARD_JSON = "model_card.json"


def machine_description() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {platform.system()}"


def reference_path() -> Path:
    return Path(str(resources.files("gpt") / "assets" / REFERENCE_DIR / REFERENCE_FILE))


def reference_card() -> dict:
    return json.loads((resources.files("gpt") / "assets" / REFERENCE_DIR / CARD_JSON).read_text())


def load_reference(device="cpu", **config_overrides):
    """The course's pretrained reference GPT (see ``gpt/assets/reference/MODEL_CARD.md``)."""
    from .train import load_model

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
