"""Experiments built on the core: the fine-tuning runner, results files, comparisons with their
uncertainty, the LoRA variants ablation, DAPT, the bag-of-words baseline, run folders, a second task."""
