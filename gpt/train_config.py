"""What defines a pretraining run: :class:`TrainConfig`, every field checked on construction."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from .errors import ConfigError


def is_whole_number(x) -> bool:
    """An int (or numpy int), not a bool."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)



def _is_real(x) -> bool:
    """A finite real number, not a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)



@dataclass
class TrainConfig:
    """Hyperparameters of a pretraining run. Every field is checked on construction; a value that
    cannot work raises :class:`~gpt.errors.ConfigError` (a ``ValueError``) naming the field."""

    max_steps: int = 1000
    batch_size: int = 16
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0  # None or 0: no clipping
    eval_interval: int = 100
    eval_batches: int = 20
    precision: str = "auto"  # "auto" (bf16 where fast), "bf16" or "fp32"
    device: str = "auto"
    seed: int = 1234
    checkpoint_interval: int = 0  # 0: only at the end (when a run folder is given)
    compile: bool = False  # torch.compile the forward pass and loss (opt-in: compiling takes ~5-60 s)
    stop_after: int | None = None  # end this call after that many steps (to test resuming); not part of what the run learns

    def __post_init__(self):
        for name in ("max_steps", "batch_size", "eval_interval", "eval_batches"):
            v = getattr(self, name)
            if not is_whole_number(v) or v < 1:
                raise ConfigError(f"TrainConfig.{name} must be a whole number >= 1, got {v!r}")
        for name in ("warmup_steps", "checkpoint_interval"):
            v = getattr(self, name)
            if not is_whole_number(v) or v < 0:
                raise ConfigError(f"TrainConfig.{name} must be a whole number >= 0, got {v!r}")
        if not self.warmup_steps <= self.max_steps:
            raise ConfigError(f"TrainConfig.warmup_steps ({self.warmup_steps}) must be between 0 and max_steps ({self.max_steps})")
        if not is_whole_number(self.seed):
            raise ConfigError(f"TrainConfig.seed must be a whole number, got {self.seed!r}")
        if not _is_real(self.lr) or self.lr <= 0:
            raise ConfigError(f"TrainConfig.lr must be a finite number > 0, got {self.lr!r}")
        if not _is_real(self.min_lr) or not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"TrainConfig.min_lr must be between 0 and lr ({self.lr!r}), got {self.min_lr!r}")
        if not _is_real(self.weight_decay) or self.weight_decay < 0:
            raise ConfigError(f"TrainConfig.weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if self.grad_clip is not None and (not _is_real(self.grad_clip) or self.grad_clip < 0):
            raise ConfigError(f"TrainConfig.grad_clip must be None or a finite number >= 0, got {self.grad_clip!r}")
        try:
            betas = tuple(self.betas)
        except TypeError:
            betas = None
        if betas is None or len(betas) != 2 or not all(_is_real(b) and 0 <= b < 1 for b in betas):
            raise ConfigError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = tuple(float(b) for b in betas)
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"TrainConfig.precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")
        if self.stop_after is not None and (not is_whole_number(self.stop_after) or self.stop_after < 1):
            raise ConfigError(f"TrainConfig.stop_after must be None or a whole number >= 1, got {self.stop_after!r}")
        if not isinstance(self.compile, bool):
            raise ConfigError(f"TrainConfig.compile must be True or False, got {self.compile!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError(f"TrainConfig.device must be 'auto' or a torch device such as 'cpu' or 'cuda', got {self.device!r}")
