"""A small GPT built from scratch, pretrained on a CPU and fine-tuned with LoRA to classify SMS spam.

Read the package in this order (the core, about an afternoon):

1. :mod:`gpt.tokenizer`: text to token ids (GPT-2's BPE, and the course's own BPE trainer).
2. :mod:`gpt.data`: the books as text, token ids, and next-token windows for pretraining.
3. :mod:`gpt.model`: the GPT itself: attention, blocks, generation.
4. :mod:`gpt.train_config`, :mod:`gpt.train`: the next-token loss and the pretraining loop.
5. :mod:`gpt.sms`, :mod:`gpt.classifier`, :mod:`gpt.metrics`: the spam task and the GPT as a classifier.
6. :mod:`gpt.lora` (layer, variants): low-rank adapters, where LoRA enters fine-tuning.
7. :mod:`gpt.finetune_config`, :mod:`gpt.finetune`: one fine-tuning run in named steps.

Around the core, each folder one layer (docs/package.md draws them):

- :mod:`gpt.io`: files on disk: one atomic writer and one sha256, verified downloads and caches, the SMS files, model files,
  checkpoints and resume, adapter files, GPT-2 weights;
- :mod:`gpt.runtime`: device and precision, DDP, meters, speed, the fused loss and LoRA's fast path, progress bars, profiles, external tools;
- :mod:`gpt.experiments`: the runner behind ``python -m gpt finetune`` / ``experiment``, results, comparisons, ablations;
- :mod:`gpt.teaching`: the classroom commands, the setup report, the reference checkpoint, plots;
- :mod:`gpt.cli`: every argparse parser and command handler, and nothing else.

The old flat paths (``gpt.files``, ``gpt.viz``, ...) still import for one release, with a
DeprecationWarning (:mod:`gpt.deprecated`).
"""

from . import deprecated

deprecated.install()
