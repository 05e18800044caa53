"""Experiments built on the core: the fine-tuning runner, results files, comparisons with their
uncertainty, the LoRA variants ablation, DAPT, the bag-of-words baseline, run folders, a second task,
and the SMS re-splits they train on (natural distribution, k-fold)."""
