"""What defines a pretraining run: :class:`TrainConfig`, every field checked on construction."""

from __future__ import annotations

from dataclasses import dataclass

from .checks import check_bool, check_choice, check_number, check_whole_number, is_finite_number
from .errors import ConfigError
from .runtime.device import PRECISIONS


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
            check_whole_number(f"TrainConfig.{name}", getattr(self, name), minimum=1)
        for name in ("warmup_steps", "checkpoint_interval"):
            check_whole_number(f"TrainConfig.{name}", getattr(self, name), minimum=0)
        if not self.warmup_steps <= self.max_steps:
            raise ConfigError(f"TrainConfig.warmup_steps ({self.warmup_steps}) must be between 0 and max_steps ({self.max_steps})")
        check_whole_number("TrainConfig.seed", self.seed)
        check_number("TrainConfig.lr", self.lr, low=0.0, low_open=True)
        if not is_finite_number(self.min_lr) or not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"TrainConfig.min_lr must be between 0 and lr ({self.lr!r}), got {self.min_lr!r}")
        check_number("TrainConfig.weight_decay", self.weight_decay, low=0.0)
        if self.grad_clip is not None and (not is_finite_number(self.grad_clip) or self.grad_clip < 0):
            raise ConfigError(f"TrainConfig.grad_clip must be None or a finite number >= 0, got {self.grad_clip!r}")
        try:
            betas = tuple(self.betas)
        except TypeError:
            betas = None
        if betas is None or len(betas) != 2 or not all(is_finite_number(b) and 0 <= b < 1 for b in betas):
            raise ConfigError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = tuple(float(b) for b in betas)
        check_choice("TrainConfig.precision", self.precision, PRECISIONS)
        if self.stop_after is not None:
            check_whole_number("TrainConfig.stop_after", self.stop_after, minimum=1)
        check_bool("TrainConfig.compile", self.compile)
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError(f"TrainConfig.device must be 'auto' or a torch device such as 'cpu' or 'cuda', got {self.device!r}")
