"""Run sizes for notebooks and commands, chosen by one environment variable.

``GPT_PROFILE=default`` (or unset) gives the real course run; ``GPT_PROFILE=ci`` shrinks every
loop so CI can execute all notebooks in a few minutes. Notebooks read their sizes from here and
never branch on the profile themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    pretrain_steps: int  # notebook 04's own pretraining run
    pretrain_batch_size: int
    eval_interval: int
    eval_batches: int
    sample_tokens: int  # tokens generated per sample
    finetune_epochs: int  # notebook 05: epochs per fine-tuning run (0: the strategy's default, gpt.finetune.DEFAULT_CONFIGS)
    finetune_train_limit: int  # notebook 05: train on the first N messages of the train split (0: all 1,045)
    finetune_eval_limit: int  # notebook 05: evaluate on the first N messages of each other split (0: all)
    gpt2_base: str = "gpt2"  # notebook 08: GPT-2 from the hub, or "tiny-random-gpt2" (gpt.io.hf.base_for: no download)
    # `python -m gpt experiment` (the main job, scripts/main.sh): None keeps the command's own default
    # (3 seeds, LoRA ranks 1-32, each strategy's epochs); the CI profile makes it a smoke run of a minute or two
    experiment_seeds: tuple[int, ...] | None = None
    experiment_ranks: tuple[int, ...] | None = None
    experiment_epochs: int | None = None


PROFILES = {
    "default": Profile("default", pretrain_steps=1500, pretrain_batch_size=16, eval_interval=100, eval_batches=20, sample_tokens=60, finetune_epochs=0, finetune_train_limit=0, finetune_eval_limit=0),
    "ci": Profile("ci", pretrain_steps=30, pretrain_batch_size=8, eval_interval=10, eval_batches=2, sample_tokens=20, finetune_epochs=1, finetune_train_limit=48, finetune_eval_limit=48, gpt2_base="tiny-random-gpt2",
              experiment_seeds=(0,), experiment_ranks=(8,), experiment_epochs=1),
}


def get_profile(name: str | None = None) -> Profile:
    """The profile named by ``name`` or by ``$GPT_PROFILE`` (default: ``"default"``)."""
    name = name or os.environ.get("GPT_PROFILE") or "default"
    if name not in PROFILES:
        raise ValueError(f"GPT_PROFILE={name!r} is not a profile; choose one of {sorted(PROFILES)}")
    return PROFILES[name]
