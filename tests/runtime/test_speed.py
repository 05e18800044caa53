"""gpt.runtime.speed: model FLOPs per token counted from the model itself, a measured peak, MFU arithmetic."""

import math

import torch
import torch.nn as nn

from gpt.model import GPT, GPTConfig
from gpt.runtime.speed import matmul_peak_flops, mfu, training_flops_per_token


def test_flops_per_token_is_six_per_matmul_weight_plus_attention():
    for preset in ("course", "course-tiny", "gpt2-small"):
        config = GPTConfig.from_preset(preset)
        model = GPT(config)
        # every Linear weight, the output layer included (tied to the embedding, but a matmul all the same)
        matmul_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
        attention = 12 * config.n_layer * config.context_length * config.n_embd
        assert training_flops_per_token(config) == 6 * matmul_weights + attention
    assert 17e6 < training_flops_per_token(GPTConfig.from_preset("course")) < 18e6


def test_peak_is_a_positive_speed_and_mfu_is_its_fraction():
    torch.manual_seed(0)
    peak = matmul_peak_flops(torch.float32, n=64, seconds=0.01, repeats=2)
    assert math.isfinite(peak) and peak > 1e6
    config = GPTConfig.from_preset("course")
    assert mfu(1000.0, config, peak_flops=training_flops_per_token(config) * 2000.0) == 0.5
