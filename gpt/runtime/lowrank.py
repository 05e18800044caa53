"""LoRA's forward and backward pass made fast: ``y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ`` as one autograd function.

:class:`gpt.lora.layer.LoRALinear` computes the definition; without dropout it hands that same sum to
:func:`low_rank_update_linear`, which computes it the way LoRA training wants it: no gradient of the
frozen ``W``, no weight-sized copy kept for the backward pass, and in bf16 the low-rank term summed in
one ``addmm`` so that a small update is not lost in W's rounding. The numbers are the definition's
(``tests/lora/test_layer.py`` checks them against it term by term).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["LowRankUpdateLinear", "low_rank_update_linear"]


class LowRankUpdateLinear(torch.autograd.Function):
    """``y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ`` for a frozen ``W`` and ``b``, computed the way LoRA training wants it.

    The numbers are the definition's, at the definition's precision:

    * In fp32, ``W + s·B·A`` is formed once (a small (out × in) sum, exact to fp32 rounding) and used
      in one matmul, so the update costs no extra product over the tokens.
    * In bf16 (autocast), that sum would be rounded to bf16 as a whole, and an update much smaller
      than ``W`` would be lost in W's rounding (measured: LoRA r=8 lost about a point of test
      accuracy that way, ``scripts/lora_path_ab.py``). So the low-rank term stays a term of its own:
      ``x·Wᵀ`` and ``(x·Aᵀ)·(s·B)ᵀ`` are summed inside one ``addmm`` (fp32 accumulation, one rounding).

    Backward: ``x`` gets ``dy·W + (dy·s·B)·A``; ``A`` and ``B`` get their gradients from products
    with the rank-r factors; the (out × in) gradient of ``W``, which full fine-tuning pays for and
    LoRA does not need, is never computed. Nothing weight-sized is saved for the backward pass: the
    bf16 copy of ``W`` (or ``W + s·B·A`` in fp32) is made again there, which costs one small cast and
    saves a weight-sized copy per layer (autocast keeps one for a plain layer).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, A, B, scaling):
        with torch.autocast(x.device.type, enabled=False):
            x2 = x.reshape(-1, x.shape[-1])  # (N, in)
            b = None if bias is None else bias.to(x.dtype)
            if torch.finfo(x.dtype).bits >= 32:  # fp32: one product with W + s·B·A
                y = F.linear(x2, weight + scaling * (B @ A), b)  # (N, out)
                h = None
            else:  # bf16: x·Wᵀ (+ b) and the low-rank term, summed in one addmm
                h = x2 @ A.to(x.dtype).t()  # (N, in) @ (in, r) -> (N, r)
                y = F.linear(x2, weight.to(x.dtype), b)  # (N, out)
                y = y.addmm_(h, (scaling * B).to(x.dtype).t())  # += (N, r) @ (r, out)
        ctx.save_for_backward(x, h, weight, A, B)  # weight: the Parameter itself, no copy
        ctx.scaling = scaling
        return y.view(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, dy):
        x, h, weight, A, B = ctx.saved_tensors
        s = ctx.scaling
        with torch.autocast(dy.device.type, enabled=False):
            x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1]).to(x.dtype)  # (N, in), (N, out)
            A_, sB = A.to(x.dtype), (s * B).to(x.dtype)  # (r, in), (out, r)
            # (products ordered so that none has an output only r wide: those are slow, in fp32 most of all)
            gT = sB.t() @ dy2.t()  # (r, out) @ (out, N) -> (r, N): the gradient at the low-rank bottleneck
            dx = None
            if ctx.needs_input_grad[0]:
                if h is None:  # fp32: dy·(W + s·B·A)
                    dx = dy2 @ (weight + s * (B @ A))
                else:
                    dx = (dy2 @ weight.to(x.dtype)).addmm_(gT.t(), A_)  # dy·W + (dy·s·B)·A
                dx = dx.view(x.shape)
            dA = gT @ x2  # (r, N) @ (N, in) -> (r, in)
            hT = A_ @ x2.t() if h is None else h.t()  # (r, N)
            dB = s * (hT @ dy2).t()  # ((r, N) @ (N, out))ᵀ -> (out, r)
        return dx, None, None, dA.to(A.dtype), dB.to(B.dtype), None


def low_rank_update_linear(x: torch.Tensor, weight, bias, A, B, scaling: float) -> torch.Tensor:
    """``x·Wᵀ + b + scaling·(x·Aᵀ)·Bᵀ`` by :class:`LowRankUpdateLinear`, in autocast's dtype where autocast is on."""
    dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else weight.dtype
    return LowRankUpdateLinear.apply(x.to(dtype), weight, bias, A, B, scaling)
