"""Diagnostic: does LoRALinear's training path change accuracy? LoRA r=8 with the package's defaults, once
with the package's forward (one product with W + scaling·B·A, rounded to bf16 under autocast) and once with
the term-by-term definition (base(x) + scaling·B(A(x)), the low-rank term rounded on its own), same seed.

    python scripts/lora_path_ab.py 0 1 2     # prints one line per (path, seed); ~4 min on 2 cores
"""

import sys

import torch.nn.functional as F

import gpt.lora as L
from gpt.finetune import build_model, default_config, finetune
from gpt.sms import load_splits

PACKAGE_FORWARD = L.LoRALinear.forward


def definition_forward(self, x):
    if self.merged or self.disabled:
        return F.linear(x, self.weight, self.bias)
    return F.linear(x, self.weight, self.bias) + self.scaling * self.lora_B(self.lora_A(self.lora_dropout(x)))


def main(seeds) -> None:
    splits = load_splits()
    for seed in seeds:
        for name, forward in (("package", PACKAGE_FORWARD), ("definition", definition_forward)):
            L.LoRALinear.forward = forward
            config = default_config("lora", seed=seed)
            result = finetune(build_model(config), splits, config, progress=False)
            print(f"{name:10s} seed {seed}: balanced test accuracy {result.metrics['test']['accuracy']:.4f}, "
                  f"best epoch {result.best_epoch}, {1000 * result.seconds_per_step:.0f} ms/step", flush=True)
    L.LoRALinear.forward = PACKAGE_FORWARD


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [0, 1, 2])
