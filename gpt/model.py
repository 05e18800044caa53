"""The GPT model: configuration, attention, transformer blocks and text generation.

Shapes in comments use B = batch, T = sequence length, C = n_embd (embedding width),
H = n_head, D = C // H (head width), V = vocab_size.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import check_bool, check_choice, check_number, check_whole_number
from .errors import ConfigError
from .io.checkpoint import load_state_dict_strict
from .io.hf import GPT2_VOCAB_SIZE, read_pretrained


@dataclass
class GPTConfig:
    vocab_size: int = 4096
    context_length: int = 256
    n_layer: int = 4
    n_head: int = 3
    n_embd: int = 192
    dropout: float = 0.0
    qkv_bias: bool = False  # GPT-2 has a bias on the query/key/value projections
    tie_weights: bool = True  # share the token embedding with the output layer
    # "auto" (the faster of the two where it is run, see ``CausalSelfAttention``), "sdpa" (PyTorch's
    # fused kernel) or "explicit" (the masked softmax taught in notebook 02). All give the same result.
    attn_impl: str = "auto"

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "n_layer", "n_head", "n_embd"):
            check_whole_number(f"GPTConfig.{name}", getattr(self, name), minimum=1)
        if self.n_embd % self.n_head != 0:
            raise ConfigError(
                f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}) "
                "so that every attention head gets the same width"
            )
        check_number("GPTConfig.dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        for name in ("qkv_bias", "tie_weights"):
            check_bool(f"GPTConfig.{name}", getattr(self, name))
        check_choice("GPTConfig.attn_impl", self.attn_impl, ATTN_IMPLS)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "GPTConfig":
        """A named preset (see ``PRESETS``), with any field overridden."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"a GPTConfig is a dict of fields, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown GPTConfig fields: {sorted(unknown)}")
        return cls(**d)


ATTN_IMPLS = ("auto", "sdpa", "explicit")

_GPT2 = dict(vocab_size=50257, context_length=1024, qkv_bias=True, tie_weights=True, dropout=0.0)
PRESETS: dict[str, dict] = {
    # GPT-2's published shapes (Radford et al., 2019).
    "gpt2-small": dict(_GPT2, n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": dict(_GPT2, n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": dict(_GPT2, n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": dict(_GPT2, n_layer=48, n_head=25, n_embd=1600),
    # The course's own model: pretrains on a 2-core laptop CPU in minutes (course BPE, 4,096 tokens).
    "course": dict(vocab_size=4096, context_length=256, n_layer=4, n_head=3, n_embd=192),
    # A toy size for tests and the CI profile.
    "course-tiny": dict(vocab_size=4096, context_length=64, n_layer=2, n_head=2, n_embd=32),
}


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention.

    Every token builds a query, a key and a value; a token may only look at itself and
    earlier tokens (the causal mask). Two implementations give the same result: an explicit
    masked softmax (what the notebooks teach) and PyTorch's fused ``scaled_dot_product_attention``.

    ``attn_impl="auto"`` picks by what the benchmarks measured (``bench/results/train_speed.md``):
    on a CPU with bf16 activations (bf16 autocast) the explicit version, whose two small bf16
    matmuls beat the fused kernel at the course's sizes; everywhere else (fp32 on a CPU, any GPU)
    the fused kernel.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        C = config.n_embd
        self.n_head = config.n_head
        self.head_dim = C // config.n_head
        self.q_proj = nn.Linear(C, C, bias=config.qkv_bias)
        self.k_proj = nn.Linear(C, C, bias=config.qkv_bias)
        self.v_proj = nn.Linear(C, C, bias=config.qkv_bias)
        self.out_proj = nn.Linear(C, C)
        self.dropout = config.dropout
        self.attn_impl = config.attn_impl
        mask = torch.triu(torch.ones(config.context_length, config.context_length, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal_mask", mask, persistent=False)  # (ctx, ctx), True = "future, hide"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        H, D = self.n_head, self.head_dim
        # (B, T, C) -> (B, H, T, D): split the width into H heads that attend independently
        q = self.q_proj(x).view(B, T, H, D).transpose(1, 2)
        k = self.k_proj(x).view(B, T, H, D).transpose(1, 2)
        v = self.v_proj(x).view(B, T, H, D).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        if self.use_sdpa(q):
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # (B, H, T, D)
        else:
            y = explicit_causal_attention(q, k, v, self.causal_mask[:T, :T], p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-join the heads: (B, T, C)
        return self.out_proj(y)

    def use_sdpa(self, q: torch.Tensor) -> bool:
        """Whether this call runs the fused kernel (True) or the explicit masked softmax (False)."""
        if self.attn_impl == "auto":
            return not (q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16))
        return self.attn_impl == "sdpa"


def explicit_causal_attention(q, k, v, mask, dropout_p: float = 0.0):
    """softmax(q·kᵀ/√D with future positions set to -inf)·v, written out step by step.

    q, k, v: (B, H, T, D); mask: (T, T) bool, True where a query must not see a key.
    """
    q = q * (1.0 / math.sqrt(q.size(-1)))  # scaling q = scaling the scores, on (B, H, T, D) instead of (B, H, T, T)
    scores = q @ k.transpose(-2, -1)  # (B, H, T, T)
    # hide the future: add -inf where mask is True (the same as masked_fill(mask, -inf); an addition has no
    # backward work, which makes it the faster of the two on a CPU)
    scores = scores + torch.zeros(mask.shape, dtype=scores.dtype, device=scores.device).masked_fill_(mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # each row sums to 1 over the visible keys
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v  # (B, H, T, D)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))  # (B, T, C) -> (B, T, 4C) -> (B, T, C)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x):
        x = x + self.drop(self.attn(self.ln1(x)))
        x = x + self.drop(self.mlp(self.ln2(x)))
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.context_length, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.tok_emb.weight
        # The tokenizer the weights were trained with, when it is not the course's: "gpt2" for a model
        # from from_pretrained. gpt.classifier and the commands pick it up (gpt.tokenizer.tokenizer_of).
        self.tokenizer_name: str | None = None
        self.apply(self._init_weights)
        # GPT-2: scale the layers that write into the residual stream by 1/sqrt(2 * n_layer),
        # so the residual's variance does not grow with depth.
        for block in self.blocks:
            for proj in (block.attn.out_proj, block.mlp.proj):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @classmethod
    def from_pretrained(cls, name_or_path, device="cpu", **config_overrides) -> "GPT":
        """GPT-2's weights from Hugging Face (``"gpt2"``, ``"gpt2-medium"``, ``"gpt2-large"``, ``"gpt2-xl"``,
        or a local folder with ``config.json`` + ``model.safetensors``), converted to this model
        (:func:`gpt.io.hf.read_pretrained`); paired with GPT-2's tokenizer. ``config_overrides``: ``dropout``
        (default 0.0), ``attn_impl``. The model comes in eval mode, in fp32, with ``model.pretrained`` =
        the files it was read from; its logits equal ``GPT2LMHeadModel``'s."""
        fields, state, files = read_pretrained(name_or_path, **config_overrides)
        config = GPTConfig(**fields)
        with torch.device("meta"):  # no random initialisation of weights that are overwritten at once
            model = cls(config)
        model.to_empty(device="cpu")
        for block in model.blocks:  # (the causal-mask buffer is not in the state dict: rebuild it)
            n = config.context_length
            block.attn.causal_mask = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
        load_state_dict_strict(model, state, source=str(files.weights[0]))
        if config.tie_weights:
            model.lm_head.weight = model.tok_emb.weight
        model.tokenizer_name = "gpt2" if config.vocab_size == GPT2_VOCAB_SIZE else None
        model.pretrained = files
        return model.to(device).eval()

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> final normalised hidden states (B, T, C)."""
        self._check_ids(idx)
        B, T = idx.shape
        if T > self.config.context_length:
            raise ConfigError(
                f"sequence of {T} tokens is longer than the model's context of "
                f"{self.config.context_length}; truncate it (or crop to the last tokens)"
            )
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def _check_ids(self, idx) -> None:
        """Token ids must be an integer tensor (batch, time) with every id in [0, vocab_size).

        Checked here (one min/max) so that a bad id is a clear :class:`~gpt.errors.ConfigError`, not an
        ``IndexError`` deep inside the embedding (or a device-side assert on a GPU)."""
        if not isinstance(idx, torch.Tensor):
            raise ConfigError(f"token ids must be a torch tensor of shape (batch, time), got {type(idx).__name__}")
        if idx.dim() != 2:
            raise ConfigError(f"expected token ids of shape (batch, time), got {tuple(idx.shape)}")
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise ConfigError(f"token ids must be an integer tensor, got dtype {idx.dtype}")
        # (skipped inside torch.compile, where the .min() would split the graph; gpt.train.pretrain checks its data first)
        if idx.numel() and not torch.compiler.is_compiling():
            lo, hi = int(idx.min()), int(idx.max())
            V = self.config.vocab_size
            if lo < 0 or hi >= V:
                bad = lo if lo < 0 else hi
                raise ConfigError(
                    f"token id {bad} is outside the model's vocabulary (ids 0 to {V - 1}); "
                    "the ids come from another tokenizer, or the checkpoint does not match it"
                )

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> next-token logits (B, T, V)."""
        return self.lm_head(self.hidden_states(idx))

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_id: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Extend ``idx`` (B, T) by up to ``max_new_tokens`` tokens.

        temperature 0 is greedy decoding; otherwise logits are divided by the temperature,
        optionally restricted to the ``top_k`` most likely tokens and/or the smallest set whose
        probability reaches ``top_p``, then sampled. Stops early once every row produced ``eos_id``.

        Bad arguments (an empty prompt, an id outside the vocabulary, a negative ``max_new_tokens``,
        a NaN temperature, ...) raise :class:`~gpt.errors.ConfigError` (a ``ValueError``).
        """
        check_whole_number("max_new_tokens", max_new_tokens, minimum=0)
        check_number("temperature", temperature, low=0.0)
        if top_k is not None:
            check_whole_number("top_k", top_k, minimum=1)
        if top_p is not None:
            check_number("top_p", top_p, low=0.0, high=1.0, low_open=True)
        if isinstance(idx, torch.Tensor) and idx.dim() == 2 and idx.size(1) == 0:
            raise ConfigError("the prompt is empty: generate needs at least one token to continue (e.g. the end-of-text token)")
        self._check_ids(idx)
        if eos_id is not None:
            check_whole_number("eos_id (a token id)", eos_id, minimum=0, maximum=self.config.vocab_size - 1)
        was_training = self.training
        self.eval()
        finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        for _ in range(int(max_new_tokens)):
            logits = self(idx[:, -self.config.context_length :])[:, -1, :].float()  # (B, V), last position
            if temperature == 0.0:
                next_id = logits.argmax(dim=-1, keepdim=True)
            else:
                next_id = sample_next(logits / temperature, top_k, top_p, generator)
            if eos_id is not None:  # rows that already ended keep emitting eos
                next_id = torch.where(finished[:, None], torch.full_like(next_id, eos_id), next_id)
                finished |= next_id.squeeze(1) == eos_id
            idx = torch.cat([idx, next_id], dim=1)
            if eos_id is not None and bool(finished.all()):
                break
        self.train(was_training)
        return idx


def sample_next(logits, top_k=None, top_p=None, generator=None):
    """Sample one token id per row from (B, V) logits with optional top-k / top-p filtering."""
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop = cum - torch.softmax(sorted_logits, dim=-1) >= top_p  # keep the first token that crosses top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of distinct parameters (a tied weight counts once)."""
    seen, total = set(), 0
    for p in model.parameters():  # .parameters() already yields a shared tensor once
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total
