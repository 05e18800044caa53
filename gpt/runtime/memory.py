"""Will a training run fit in memory? Checked before the first step, not discovered by the kernel's
out-of-memory killer an hour (or a minute) later with no message.

* :func:`training_bytes_lower_bound` -- a deliberately low estimate of the memory one training step
  of a :class:`~gpt.model.GPT` needs: weights, gradients and AdamW's two moments (16 bytes per
  parameter) plus the activations autograd keeps for the backward pass. The activations are counted
  as 12 fp32 numbers per layer, per embedding dimension and per token of the batch (``batch_size x
  context_length`` tokens): measured with :class:`gpt.runtime.meters.SavedActivations` on the
  ``course`` and ``course-tiny`` presets, a training forward saves more than that (about 14 to 33
  numbers in fp32 or bf16), so the bound errs on the side of letting a run start.
* :func:`available_bytes` -- the memory free for the run: on a CUDA device what the driver reports
  free on it, on the CPU the system's available memory (``psutil`` where installed, else
  ``/proc/meminfo``'s ``MemAvailable``); ``None`` where neither can be read (then nothing is checked).
* :func:`check_training_memory` -- refuses (:class:`~gpt.errors.ConfigError`, naming ``--batch-size``
  and the largest batch that could fit) a run whose lower bound exceeds the available memory.
* :func:`parameter_bytes` / :func:`training_memory_estimate` -- what a model's weights take, and a rough
  total for training it with AdamW (weights + gradients + two moments), as notebook 03 tabulates them.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..model import count_parameters

__all__ = ["training_bytes_lower_bound", "available_bytes", "check_training_memory", "ACTIVATION_NUMBERS_PER_LAYER_DIM",
           "parameter_bytes", "training_memory_estimate"]

ACTIVATION_NUMBERS_PER_LAYER_DIM = 12  # fp32 numbers saved per token, layer and embedding dimension (a lower bound)
_BYTES_PER_PARAMETER = 16  # fp32 weights, gradients, AdamW's exp_avg and exp_avg_sq


def _activation_bytes_per_window(config) -> int:
    return 4 * ACTIVATION_NUMBERS_PER_LAYER_DIM * config.context_length * config.n_layer * config.n_embd


def training_bytes_lower_bound(config, n_parameters: int, batch_size: int) -> int:
    """A low estimate of the bytes one training step needs: ``n_parameters`` with their gradients and
    AdamW state, and the saved activations of ``batch_size`` windows of ``config.context_length`` tokens."""
    return _BYTES_PER_PARAMETER * n_parameters + batch_size * _activation_bytes_per_window(config)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_bytes(device) -> int | None:
    """Bytes free for a run on ``device`` (see the module's doc); ``None`` when unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    if device.type != "cpu":
        return None
    try:
        import psutil  # optional: not a dependency of the package
    except ImportError:
        return _meminfo_available()
    return int(psutil.virtual_memory().available)


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def check_training_memory(config, n_parameters: int, batch_size: int, device, *, processes: int = 1,
                          flag: str = "--batch-size", available: int | None = None) -> None:
    """Refuse a run that cannot fit: :class:`~gpt.errors.ConfigError` when :func:`training_bytes_lower_bound`
    exceeds the memory :func:`available_bytes` (or ``available``) reports. ``batch_size`` is the global
    batch; with ``processes`` > 1 each CUDA device holds its share, while CPU processes share one memory."""
    device = torch.device(device)
    available = available_bytes(device) if available is None else available
    if available is None:
        return
    per_device = -(-batch_size // processes) if device.type == "cuda" else batch_size
    need = training_bytes_lower_bound(config, n_parameters, per_device)
    if need <= available:
        return
    fits = (available - _BYTES_PER_PARAMETER * n_parameters) // _activation_bytes_per_window(config)
    fits = fits * processes if device.type == "cuda" else fits
    where = "on the GPU" if device.type == "cuda" else "on this machine"
    advice = f"lower {flag} to {fits} or less" if fits >= 1 else "the model alone does not fit: use a smaller model or a bigger machine"
    raise ConfigError(
        f"{flag} {batch_size} needs at least {_gb(need)} of memory for training ({per_device} windows of {config.context_length} tokens "
        f"through {config.n_layer} layers of width {config.n_embd}, plus {n_parameters:,} parameters with their gradients and "
        f"AdamW state), but only {_gb(available)} is available {where}; {advice}"
    )


def parameter_bytes(model: nn.Module, dtype: torch.dtype | None = None) -> int:
    """Bytes the weights take in memory (in ``dtype`` if given, else their own dtype)."""
    size = lambda p: p.numel() * (torch.empty((), dtype=dtype).element_size() if dtype else p.element_size())  # noqa: E731
    return sum(size(p) for p in model.parameters())


def training_memory_estimate(model: nn.Module, dtype: torch.dtype = torch.float32) -> dict:
    """Rough memory for training with AdamW: weights + gradients + 2 optimizer moments (activations excluded)."""
    n_all = count_parameters(model)
    n_train = count_parameters(model, trainable_only=True)
    b = torch.empty((), dtype=dtype).element_size()
    return {
        "weights": n_all * b,
        "gradients": n_train * b,
        "adamw_state": 2 * n_train * 4,  # AdamW keeps exp_avg and exp_avg_sq in fp32
        "total": n_all * b + n_train * b + 2 * n_train * 4,
    }
