"""How fast is training, against what the machine could do? Model FLOPs and utilisation (MFU).

A training step of a transformer is almost all matrix multiplications. Counting them gives the
**model FLOPs per token** (the same convention as the PaLM paper and nanoGPT):

    6 · N  +  12 · L · T · d

* ``N`` = the weights of every matrix multiplication: per block the query, key, value and output
  projections (4·d²) and the MLP (8·d²), plus the output layer (d·V). A weight does 2 FLOPs per
  token forward (a multiply and an add) and 4 backward (the gradient of its input and of itself): 6·N.
* ``12 · L · T · d``: attention's own matmuls, q·kᵀ and weights·v, 2·T·d each forward per token and
  layer, times 3 for forward + backward. Counted for the full T×T square, as the convention does,
  although a causal kernel can skip half of it.

Embedding lookups, LayerNorm, GELU, softmax and the optimizer are not counted: they are the
"overhead" that MFU exposes.

**MFU** = model FLOPs per second ÷ the machine's peak FLOPs per second. The peak is *measured*
here (:func:`matmul_peak_flops`: the best of a few large square matmuls), not taken from a data
sheet, so MFU answers "what fraction of the matmul speed this machine demonstrably has does
training reach?".
"""

from __future__ import annotations

import time

import torch

from ..model import GPTConfig

__all__ = ["training_flops_per_token", "matmul_peak_flops", "mfu"]


def training_flops_per_token(config: GPTConfig) -> int:
    """Model FLOPs to train on one token (forward + backward): 6·N + 12·L·T·d (see the module docstring)."""
    d, L, T, V = config.n_embd, config.n_layer, config.context_length, config.vocab_size
    n_matmul = L * 12 * d * d + d * V
    return 6 * n_matmul + 12 * L * T * d


def matmul_peak_flops(dtype: torch.dtype = torch.bfloat16, n: int = 2048, seconds: float = 1.0, device="cpu", repeats: int = 3) -> float:
    """FLOP/s of an (n × n) @ (n × n) matmul in ``dtype`` on ``device``: the best of ``repeats``
    measurements of about ``seconds`` each, after a warmup. Uses the threads torch uses
    (``torch.get_num_threads()``), like training does."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    flops = 2 * n**3
    a @ b  # warmup
    sync()
    t = time.perf_counter()
    a @ b
    sync()
    reps = max(1, int(seconds / max(time.perf_counter() - t, 1e-6)))
    best = 0.0
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync()
        best = max(best, flops * reps / (time.perf_counter() - t))
    return best


def mfu(tokens_per_second: float, config: GPTConfig, peak_flops: float) -> float:
    """Model FLOPs utilisation: ``tokens_per_second`` × :func:`training_flops_per_token` ÷ ``peak_flops``."""
    return tokens_per_second * training_flops_per_token(config) / peak_flops
