"""The improvements of LoRA that Hugging Face PEFT offers, each as the few lines that make it.

:class:`gpt.lora.LoRALinear` takes them as options with PEFT's names; this module holds the maths,
small enough to read (and, in notebook 07, to write yourself and check against):

* **rsLoRA** (``use_rslora=True``; Kalajdzievski, 2023): the update's scale is ``lora_alpha / √r``
  instead of ``lora_alpha / r`` (:func:`lora_scaling`). With ``1/r`` the update shrinks as the rank
  grows, so a higher rank learns more slowly; with ``1/√r`` its size stays about the same.
* **DoRA** (``use_dora=True``; Liu et al., 2024): the weight is split into a magnitude per output row
  and a direction. The layer computes ``m ⊙ (W + ΔW) / ‖W + ΔW‖`` with the row norms of
  :func:`dora_weight_norm` (treated as a constant in the backward pass, as in the paper and in PEFT)
  and a trained vector ``m`` (``lora_magnitude_vector``), initialised to ``‖W‖``.
* **PiSSA** (``init_lora_weights="pissa"``; Meng et al., 2024): A and B start as the principal
  singular directions of W, and W keeps only the residual (:func:`pissa_factors`), so the layer
  computes W at the start but trains its most important directions. Because W changed, a PiSSA
  adapter is saved as a plain LoRA delta for the *untouched* base (:func:`pissa_to_lora`).
* **LoRA+** (Hayou et al., 2024): B gets a larger learning rate than A, ``ratio`` × (about 16)
  (:func:`lora_plus_param_groups`, the same groups as PEFT's ``create_loraplus_optimizer``).
* ``init_lora_weights="gaussian"``: A drawn from N(0, (1/r)²) instead of Kaiming-uniform (PEFT's option).
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn as nn

from ..errors import ConfigError

__all__ = [
    "INIT_LORA_WEIGHTS", "lora_scaling", "dora_weight_norm", "pissa_factors", "pissa_to_lora",
    "lora_plus_param_groups", "LORAPLUS_LR_RATIO",
]  # fmt: skip

INIT_LORA_WEIGHTS = ("kaiming", "gaussian", "pissa")  # PEFT writes "kaiming" as init_lora_weights=True
LORAPLUS_LR_RATIO = 16.0  # LoRA+'s suggested ratio of B's learning rate to A's


def lora_scaling(lora_alpha: float, r: int, use_rslora: bool = False) -> float:
    """The update's scale: ``lora_alpha / r`` (LoRA) or ``lora_alpha / √r`` (rsLoRA)."""
    return lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r


def dora_weight_norm(weight: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """DoRA's row norms ``‖W + ΔW‖`` (one per output row, shape (out,)) of (out, in) matrices."""
    return torch.linalg.norm(weight + delta, dim=1)


@torch.no_grad()
def pissa_factors(weight: torch.Tensor, r: int, scaling: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PiSSA's start: ``(A, B, W_res)`` with ``scaling · B·A`` the best rank-r part of ``weight`` and
    ``W_res = W − scaling · B·A`` the rest, so that ``W_res + scaling · B·A = W``.

    From the SVD ``W = U·diag(S)·Vᵀ``: ``A = diag(√(S_r / scaling))·V_rᵀ`` (r, in) and
    ``B = U_r·diag(√(S_r / scaling))`` (out, r), both sharing the singular values (as PEFT does).
    Computed in fp32; the results have ``weight``'s dtype.
    """
    W = weight.float()
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)  # W = U diag(S) Vh
    root = torch.sqrt(S[:r] / scaling)  # (r,)
    A = root[:, None] * Vh[:r]  # (r, in)
    B = U[:, :r] * root[None, :]  # (out, r)
    residual = W - scaling * (B @ A)
    return A.to(weight.dtype), B.to(weight.dtype), residual.to(weight.dtype)


def pissa_to_lora(
    A: torch.Tensor, B: torch.Tensor, A0: torch.Tensor, B0: torch.Tensor, r: int, lora_alpha: float, use_rslora: bool = False
) -> tuple[torch.Tensor, torch.Tensor, int, float]:  # fmt: skip
    """A trained PiSSA adapter as a plain LoRA adapter for the untouched base weight.

    Training gives ``W_res + s·B·A`` with ``W_res = W − s·B0·A0``, so the change to the original W is
    ``ΔW = s·(B·A − B0·A0) = s·[B | −B0]·[A ; A0]``: a LoRA update of rank 2r. The scale must stay
    ``s``, so ``lora_alpha`` doubles (``s = α/r``) or grows by √2 (rsLoRA, ``s = α/√r``), as PEFT's
    ``save_pretrained(..., path_initial_model_for_weight_conversion=...)`` does.
    Returns ``(A', B', 2r, lora_alpha')``.
    """
    A2 = torch.cat([A, A0], dim=0)  # (2r, in)
    B2 = torch.cat([B, -B0], dim=1)  # (out, 2r)
    return A2, B2, 2 * r, lora_alpha * (math.sqrt(2) if use_rslora else 2)


def lora_plus_param_groups(model: nn.Module, lr: float, ratio: float = LORAPLUS_LR_RATIO, weight_decay: float = 0.0) -> list[dict]:
    """LoRA+'s optimizer groups: every LoRA ``B`` factor, and every 1-D trainable tensor (biases, DoRA's
    magnitude vectors), learns at ``lr · ratio``; everything else that trains (the ``A`` factors, a
    head's weight) at ``lr``. These are the learning rates PEFT's ``create_loraplus_optimizer`` gives.

    The B factors are found by type (the ``lora_B`` of each :class:`~gpt.lora.LoRALinear`, whose class says
    ``IS_LORA_LAYER``: this module cannot import the layer, which imports it), never by name. Weight decay goes to matrices only (as :func:`gpt.train.make_optimizer`). Each group also
    carries ``lr_scale`` (1 or ``ratio``): a schedule sets ``group["lr"] = lr_now * group["lr_scale"]``.
    Pass the list to ``torch.optim.AdamW``.
    """
    for name, value, low in (("lr", lr, 0.0), ("ratio", ratio, 0.0), ("weight_decay", weight_decay, None)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or (low is not None and value <= low) or value < 0:
            raise ConfigError(f"lora_plus_param_groups: {name} must be a finite number {'> 0' if low is not None else '>= 0'}, got {value!r}")
    layers = [m for m in model.modules() if getattr(type(m), "IS_LORA_LAYER", False)]  # LoRALinear, by its class
    if not layers:
        raise ConfigError("lora_plus_param_groups needs a model with LoRA layers (call apply_lora first)")
    fast_ids = {id(layer.lora_B.weight) for layer in layers}
    groups = {(scale, decay): [] for scale in (1.0, float(ratio)) for decay in (True, False)}
    for p in model.parameters():  # a tied weight appears once
        if not p.requires_grad:
            continue
        fast = id(p) in fast_ids or p.dim() == 1
        groups[(float(ratio) if fast else 1.0, p.dim() >= 2)].append(p)
    return [
        {"params": params, "lr": lr * scale, "lr_scale": scale, "weight_decay": weight_decay if decay else 0.0}
        for (scale, decay), params in groups.items() if params
    ]  # fmt: skip
