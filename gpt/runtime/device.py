"""Devices and precision: which device a run uses, and whether its matmuls run in bf16.

* :func:`pick_device` -- ``"auto"`` picks cuda, then mps, then cpu; a named device that is not valid
  or not available here is a :class:`~gpt.errors.ConfigError` (before any work).
* :func:`resolve_precision` -- ``"auto"`` means bf16 where the hardware computes it natively (an
  Ampere-or-newer GPU; a CPU with AVX-512 BF16 or AMX, :func:`cpu_has_fast_bf16`), else fp32.
* :func:`autocast` -- the context a training step runs in: bf16 autocast (weights stay fp32), or nothing.

Pretraining (:mod:`gpt.train`) and fine-tuning (:mod:`gpt.finetune`) share these.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from ..errors import ConfigError

__all__ = ["PRECISIONS", "pick_device", "cpu_has_fast_bf16", "resolve_precision", "autocast"]

# What a training precision setting may say: "auto" (resolve_precision decides), or one of the two.
PRECISIONS = ("auto", "bf16", "fp32")


def pick_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; a named device that is not valid or not available is
    a :class:`~gpt.errors.ConfigError`."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ConfigError(f"{device!r} is not a device; use 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: this machine (or this torch build) has no CUDA GPU; use 'cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r}: there are only {torch.cuda.device_count()} CUDA devices")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ConfigError(f"device {device!r}: Apple's MPS backend is not available here; use 'cpu' or 'auto'")
    return dev


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with native bf16 matrix instructions (AVX-512 BF16 or AMX), where bf16 autocast pays off."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and _cpu_flags() & {"avx512_bf16", "amx_bf16"} != set()
    except Exception:
        return False


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda":
        # native bf16 only (Ampere and newer): older GPUs such as Colab's T4 only emulate it, slowly
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str):
    """A context that runs matmuls in bf16 (weights stay fp32), or does nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()
