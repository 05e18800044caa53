"""The next-token loss: cross-entropy over the vocabulary, computed in a way that is cheap on a CPU.

``F.cross_entropy(logits.float(), targets)`` is the textbook loss, and what notebook 04 teaches.
With bf16 logits of shape (B·T, V) = (4,096, 4,096) it makes several full passes over a 64 MB
fp32 copy of the logits: the cast, log-softmax, its backward, a 64 MB tensor of zeros for the
gradient of the picked entries, and the cast of the gradient back to bf16. On a 2-core CPU those
passes cost ~60 ms of a ~380 ms training step (measured with ``torch.profiler``; see
``bench/results/vs_reference.md``).

:func:`cross_entropy` gives the same loss and the same gradient in one pass over the logits,
a few rows at a time so that the fp32 temporaries stay in the CPU's cache:

    loss_i = log Σ_j exp(z_ij) − z_i,target          (computed as m + log Σ exp(z − m), m = max_j z_ij)
    ∂loss/∂z_ij = (softmax(z_i)_j − [j = target_i]) / N

The gradient is computed in the forward pass and kept (in the logits' dtype) instead of the
logits; the backward pass only scales it. Under ``torch.compile`` the textbook formula is used,
because the compiler fuses it by itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cross_entropy", "ROWS_PER_CHUNK"]

ROWS_PER_CHUNK = 64  # 64 rows × 4,096 classes × 4 bytes = 1 MB of fp32 temporaries: fits in cache


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, rows: int) -> torch.Tensor:
        N = logits.size(0)
        keep_grad = ctx.needs_input_grad[0]
        grad = torch.empty_like(logits) if keep_grad else None
        total = torch.zeros((), dtype=torch.float32, device=logits.device)
        for start in range(0, N, rows):
            z = logits[start : start + rows].to(torch.float32, copy=True)  # (rows, V), our own copy
            t = targets[start : start + rows, None]  # (rows, 1)
            picked = z.gather(1, t)  # z_i,target
            m = z.amax(dim=1, keepdim=True)
            p = z.sub_(m).exp_()  # exp(z − m), in place
            s = p.sum(dim=1, keepdim=True)
            total += (s.log() + m - picked).sum()
            if keep_grad:
                p.div_(s)  # softmax
                p.scatter_add_(1, t, torch.full_like(picked, -1.0))  # − one-hot(target)
                grad[start : start + rows] = p
        if keep_grad:
            ctx.save_for_backward(grad)
            ctx.n = N
        return total / N

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad * (grad_loss / ctx.n).to(grad.dtype), None, None


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, rows_per_chunk: int = ROWS_PER_CHUNK) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (N, V) against class ids ``targets`` (N,), accumulated in fp32
    whatever the logits' dtype; equal to ``F.cross_entropy(logits.float(), targets)`` (to float
    rounding), with a gradient in the logits' dtype."""
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (N, V) and targets (N,), got {tuple(logits.shape)} and {tuple(targets.shape)}")
    if torch.compiler.is_compiling():
        return F.cross_entropy(logits.float(), targets)
    return _CrossEntropy.apply(logits, targets, rows_per_chunk)
