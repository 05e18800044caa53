"""The next-token loss made cheap on a CPU: cross-entropy over the vocabulary, a few rows at a time.

``F.cross_entropy(model(x).flatten(0, 1).float(), y.flatten())`` is the textbook loss, and what
notebook 04 teaches. With bf16 logits of shape (B·T, V) = (4,096, 4,096) it makes several full
passes over a 64 MB fp32 copy of the logits: the cast, log-softmax, its backward, a 64 MB tensor of
zeros for the gradient of the picked entries, and the cast of the gradient back to bf16. On a
2-core CPU the output layer and that loss cost ~110 ms of a ~390 ms training step (measured with
``torch.profiler``, see ``bench/results/vs_reference.md``).

This module computes the same loss and the same gradients a few rows at a time, so that the fp32
temporaries stay in the CPU's cache, in one pass:

    loss_i = log Σ_j exp(z_ij) − z_i,target          (computed as m + log Σ exp(z − m), m = max_j z_ij)
    ∂loss/∂z_ij = (softmax(z_i)_j − [j = target_i]) / N

* :func:`cross_entropy` takes the logits z (N, V). The gradient is computed in the forward pass and
  kept (in the logits' dtype) instead of the logits; the backward pass only scales it.
* :func:`linear_cross_entropy` takes the hidden states h (N, C) and the output layer's weight W (V, C)
  and also folds the output layer in: for each block of rows it computes z = h·Wᵀ, the loss, and the
  gradients of h and W, so the (N, V) logits never exist in full (~20 % faster again on a CPU).

Under ``torch.compile`` both fall back to the textbook formula, which the compiler fuses by itself.
The loss the pretraining loop uses is :func:`gpt.train.lm_loss`, which calls these.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cross_entropy", "linear_cross_entropy", "ROWS_PER_CHUNK"]

ROWS_PER_CHUNK = 256  # 256 rows × 4,096 classes × 4 bytes = 4 MB of fp32 temporaries


def _loss_and_grad(z: torch.Tensor, t: torch.Tensor, n: int, want_grad: bool):
    """For fp32 logits ``z`` (rows, V) that may be overwritten and targets ``t`` (rows, 1): the summed loss
    and, if ``want_grad``, (softmax(z) − one-hot(t)) / n, computed in place in ``z``."""
    picked = z.gather(1, t)  # z_i,target
    m = z.amax(dim=1, keepdim=True)
    p = z.sub_(m).exp_()  # exp(z − m), in place
    s = p.sum(dim=1, keepdim=True)
    loss = (s.log() + m - picked).sum()
    if not want_grad:
        return loss, None
    p.div_(s)  # softmax
    p.scatter_add_(1, t, torch.full_like(picked, -1.0))  # − one-hot(target)
    return loss, p.mul_(1.0 / n)


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, rows):
        N = logits.size(0)
        want_grad = ctx.needs_input_grad[0]
        grad = torch.empty_like(logits) if want_grad else None
        total = torch.zeros((), dtype=torch.float32, device=logits.device)
        for a in range(0, N, rows):
            z = logits[a : a + rows].to(torch.float32, copy=True)  # our own copy: _loss_and_grad overwrites it
            loss, g = _loss_and_grad(z, targets[a : a + rows, None], N, want_grad)
            total += loss
            if want_grad:
                grad[a : a + rows] = g
        ctx.save_for_backward(grad)
        return total / N

    @staticmethod
    def backward(ctx, grad_loss):
        (grad,) = ctx.saved_tensors
        return grad * grad_loss.to(grad.dtype), None, None


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, targets, rows, dtype):
        N = h.size(0)
        want_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        hc, wc = h.to(dtype), weight.to(dtype)  # the matmul dtype (bf16 under autocast)
        grad_h = torch.empty_like(hc) if want_grad else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_grad else None
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        for a in range(0, N, rows):
            h_rows = hc[a : a + rows]
            z = (h_rows @ wc.T).to(torch.float32)  # (rows, V) logits
            loss, g = _loss_and_grad(z, targets[a : a + rows, None], N, want_grad)
            total += loss
            if want_grad:
                g = g.to(dtype)
                grad_h[a : a + rows] = g @ wc  # ∂loss/∂h = ∂loss/∂z · W
                grad_w += g.T @ h_rows  # ∂loss/∂W = Σ_rows ∂loss/∂zᵀ · h
        ctx.save_for_backward(grad_h, grad_w)
        ctx.h_dtype = h.dtype
        return total / N

    @staticmethod
    def backward(ctx, grad_loss):
        grad_h, grad_w = ctx.saved_tensors
        g = grad_loss.float()
        return (grad_h.float() * g).to(ctx.h_dtype), grad_w * g, None, None, None


def _check(x: torch.Tensor, targets: torch.Tensor, what: str) -> None:
    if x.dim() != 2 or targets.shape != x.shape[:1]:
        raise ValueError(f"expected {what} (N, ·) and targets (N,), got {tuple(x.shape)} and {tuple(targets.shape)}")


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, rows_per_chunk: int = ROWS_PER_CHUNK) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (N, V) against class ids ``targets`` (N,), accumulated in fp32
    whatever the logits' dtype; equal to ``F.cross_entropy(logits.float(), targets)`` (to float
    rounding), with a gradient in the logits' dtype."""
    _check(logits, targets, "logits")
    if torch.compiler.is_compiling():
        return F.cross_entropy(logits.float(), targets)
    return _CrossEntropy.apply(logits, targets, rows_per_chunk)


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows_per_chunk: int = ROWS_PER_CHUNK) -> torch.Tensor:
    """``cross_entropy(hidden @ weight.T, targets)`` for hidden states (N, C) and an output layer's weight
    (V, C), without ever holding the (N, V) logits. The matmuls run in the autocast dtype when autocast
    is on (as ``nn.Linear`` would), the softmax in fp32; the gradients come back in the inputs' dtypes."""
    _check(hidden, targets, "hidden states")
    if weight.dim() != 2 or weight.size(1) != hidden.size(1):
        raise ValueError(f"expected a weight (V, {hidden.size(1)}), got {tuple(weight.shape)}")
    device_type = hidden.device.type
    dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else hidden.dtype
    if torch.compiler.is_compiling():  # the model's body is compiled, this loss runs as it is (it was faster)
        return _EAGER_UNDER_COMPILE[0](hidden, weight, targets, rows_per_chunk, dtype)
    return _eager_linear_cross_entropy(hidden, weight, targets, rows_per_chunk, dtype)


# torch.compiler.disable(_eager_linear_cross_entropy), made by prepare_compile(): importing torch's
# compiler takes about 2 s, which every process that never compiles (a fine-tuning run) would pay.
_EAGER_UNDER_COMPILE: list = []


def prepare_compile() -> None:
    """Call before ``torch.compile`` of anything that calls :func:`linear_cross_entropy`."""
    if not _EAGER_UNDER_COMPILE:
        _EAGER_UNDER_COMPILE.append(torch.compiler.disable(_eager_linear_cross_entropy))


def _eager_linear_cross_entropy(hidden, weight, targets, rows, dtype):
    with torch.autocast(hidden.device.type, enabled=False):  # the matmul dtype is chosen by the caller
        return _LinearCrossEntropy.apply(hidden, weight, targets, rows, dtype)
