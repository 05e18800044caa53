"""Tiny models and helpers shared by the LoRA and adapter tests."""

import torch
import torch.nn as nn

from gpt.lora import lora_layers
from gpt.model import GPT, GPTConfig

C = 32  # course-tiny's n_embd
N_LAYER = 2


def tiny_gpt(seed: int = 0, head: bool = False, **overrides) -> GPT:
    """course-tiny (2 layers, width 32) with a short context; optionally a 2-class ``head`` outside the blocks."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig.from_preset("course-tiny", context_length=16, **overrides))
    if head:
        model.head = nn.Linear(C, 2)
    return model.eval()


class TinyClassifier(nn.Module):
    """A classifier-like model: a GPT (``self.gpt``, holding the config) plus a ``head`` on the last token."""

    def __init__(self, gpt_model: GPT, seed: int = 0):
        super().__init__()
        self.gpt = gpt_model
        torch.manual_seed(seed)
        self.head = nn.Linear(C, 2)

    def forward(self, idx):
        return self.head(self.gpt.hidden_states(idx)[:, -1])  # (B, 2)


def token_ids(seed: int = 0, batch: int = 2, T: int = 12) -> torch.Tensor:
    return torch.randint(0, 4096, (batch, T), generator=torch.Generator().manual_seed(seed))


def randomize_lora(model, seed: int = 1, std: float = 0.1) -> None:
    """Stand-in for training: give every adapter a non-zero B (and a new A), so ΔW != 0."""
    g = torch.Generator().manual_seed(seed)
    assert list(lora_layers(model)), "randomize_lora needs a model with LoRA layers"
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_A.weight.copy_(torch.randn(layer.lora_A.weight.shape, generator=g) * std)
            layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=g) * std)


def lora_names(model) -> list[str]:
    return [name for name, _ in lora_layers(model)]


def lora_keys(model) -> set[str]:
    return {f"{n}.lora_{ab}.weight" for n in lora_names(model) for ab in "AB"}


BLOCK_LINEARS = [f"blocks.{i}.{n}" for i in range(N_LAYER) for n in ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj", "mlp.fc", "mlp.proj")]
