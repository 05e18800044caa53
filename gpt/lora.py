"""LoRA: low-rank adapters that fine-tune a frozen model by training two small matrices per layer.

A linear layer computes ``y = x·Wᵀ + b`` with a weight ``W`` of shape (out, in). LoRA (Hu et al.,
2021) freezes ``W`` and learns a low-rank update instead::

    y = x·Wᵀ + b + scaling · (x·Aᵀ)·Bᵀ        A: (r, in), B: (out, r), scaling = lora_alpha / r

The update ``ΔW = scaling · B·A`` has shape (out, in) like ``W`` but only ``r·(in + out)`` numbers.
``B`` starts at zero, so a freshly wrapped model computes exactly what the base model computes.

Names follow Hugging Face PEFT everywhere -- arguments, attributes and the adapter JSON alike:
``r``, ``lora_alpha``, ``scaling`` (= lora_alpha / r), ``lora_dropout``, ``target_modules`` and
``modules_to_save``. The factors are stored the way PEFT stores them: ``lora_A`` is an
``nn.Linear(in, r)`` (weight (r, in)) and ``lora_B`` an ``nn.Linear(r, out)`` (weight (out, r)), so a
wrapped ``q_proj`` owns the state-dict keys ``q_proj.weight``, ``q_proj.bias``,
``q_proj.lora_A.weight`` and ``q_proj.lora_B.weight``.

Typical use::

    model = load_model("runs/course/model.safetensors")
    apply_lora(model, r=8, lora_alpha=16)           # wraps every nn.Linear in model.blocks, freezes the rest
    ...train...                                      # only lora_A / lora_B (and a head, if asked) change
    save_adapter(model, "runs/spam-lora", base_checkpoint="runs/course/model.safetensors")
    merge_lora(model)                                # W <- W + scaling·B·A: inference at the base model's cost

Adapter files (a folder, PEFT-like, written in one step: both files appear together or not at all):

* ``adapter_model.safetensors`` -- the LoRA factors (``<layer>.lora_A.weight``, ``<layer>.lora_B.weight``)
  plus every deliberately trainable non-LoRA tensor (e.g. a classification head ``head.weight``);
  keys are the model's own state-dict keys (PEFT prefixes them with ``base_model.model.``; we don't).
* ``adapter_config.json`` -- ``r``, ``lora_alpha``, ``lora_dropout``, ``target_modules`` (the exact
  qualified names of the wrapped layers), ``modules_to_save``, ``bias`` ("none"),
  ``base_model_name_or_path``, ``base_model_sha256`` (of the base .safetensors file), ``tensors``
  (key -> shape), ``gpt_config`` and a free-form ``extra`` dict.

Bad arguments raise :class:`~gpt.errors.ConfigError`; an adapter that is damaged, incomplete, holds
NaN/inf, or belongs to another model raises :class:`~gpt.errors.AdapterError`; an existing adapter
folder is replaced only with ``overwrite=True`` (else :class:`~gpt.errors.OutputExistsError`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import numbers
import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .errors import AdapterError, ConfigError, OutputExistsError
from .files import atomic_dir, check_output

__all__ = [
    "AdapterError", "LoRAConfig", "LoRALinear", "apply_lora", "lora_layers", "merge_lora", "unmerge_lora",
    "disable_lora", "lora_disabled", "count_lora_parameters", "save_adapter", "load_adapter", "read_adapter",
    "file_sha256", "ADAPTER_WEIGHTS_NAME", "ADAPTER_CONFIG_NAME",
]  # fmt: skip

ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_FORMAT = "gpt-course-lora"
ADAPTER_FORMAT_VERSION = 1

# Names a classification head may have (``train_head=True`` looks for a module called one of these).
HEAD_NAMES = ("head", "classifier", "score")
# GPTConfig fields that do not change what the weights mean; an adapter may be loaded across them.
RUNTIME_FIELDS = ("dropout", "attn_impl")


class _LowRankUpdateLinear(torch.autograd.Function):
    """``y = x·(W + s·B·A)ᵀ + b`` for a frozen ``W`` and ``b``, computed the way LoRA training wants it.

    Forward: ``W + s·B·A`` is formed in the weights' precision and cast once to the input's dtype (bf16
    under autocast), then one matmul, so the update costs a small (out × in) sum instead of two extra
    matmuls and an addition over every token. Backward: ``x`` gets ``dy·(W + s·B·A)``; ``A`` and ``B``
    get their gradients from products with the rank-r factors; the (out × in) gradient of ``W``,
    which full fine-tuning pays for and LoRA does not need, is never computed. Only ``x`` is kept
    for the backward pass, with the cast ``W + s·B·A``, as autocast keeps the cast weight of a plain layer.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, A, B, scaling):
        with torch.autocast(x.device.type, enabled=False):
            w = (weight + scaling * (B @ A)).to(x.dtype)  # (out, in)
            y = F.linear(x, w, None if bias is None else bias.to(x.dtype))
        ctx.save_for_backward(x, w, A, B)  # w: one weight-sized copy per layer, as autocast keeps for a plain layer
        ctx.scaling = scaling
        return y

    @staticmethod
    def backward(ctx, dy):
        x, w, A, B = ctx.saved_tensors
        s = ctx.scaling
        with torch.autocast(dy.device.type, enabled=False):
            dy = dy.to(x.dtype)
            dx = dy @ w if ctx.needs_input_grad[0] else None  # (..., out) @ (out, in) -> (..., in)
            x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])  # (N, in), (N, out)
            # (products ordered so that no matmul has an output only r wide: those are slow in bf16)
            dA = s * ((B.to(x.dtype).t() @ dy2.t()) @ x2)  # (r, out) @ (out, N) @ (N, in) -> (r, in)
            dB = s * ((x2 @ A.to(x.dtype).t()).t() @ dy2).t()  # ((N, r)ᵀ @ (N, out))ᵀ -> (out, r)
        return dx, None, None, dA.to(A.dtype), dB.to(B.dtype), None


def _lora_problem(r, lora_alpha, lora_dropout) -> str | None:
    """What is wrong with these LoRA settings (a sentence), or None."""
    if isinstance(r, bool) or not isinstance(r, numbers.Integral) or r <= 0:  # numpy ints welcome
        return f"r (the LoRA rank) must be a positive integer, got {r!r}"
    if isinstance(lora_alpha, bool) or not isinstance(lora_alpha, numbers.Real) or not 0 < lora_alpha < math.inf:
        return f"lora_alpha must be a positive number, got {lora_alpha!r}"
    if isinstance(lora_dropout, bool) or not isinstance(lora_dropout, numbers.Real) or not 0.0 <= lora_dropout < 1.0:
        return f"lora_dropout must be a number in [0, 1), got {lora_dropout!r}"
    return None


# ---------------------------------------------------------------------------------------------
# The layer


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``scaling · B·A``.

    Attributes: ``r`` (rank), ``lora_alpha``, ``scaling`` (= lora_alpha / r), ``lora_A`` / ``lora_B``
    (the factors), ``lora_dropout`` (the dropout *module* on the update's input: ``nn.Dropout`` or, for
    probability 0, ``nn.Identity``, as in PEFT) and ``lora_dropout_p`` (its probability, a float).

    The wrapped layer's ``weight`` (out, in) and ``bias`` (out,) Parameters are registered on this
    module under the same names (not as ``base.weight``), so a plain model's state dict loads into a
    LoRA model with only the ``lora_A`` / ``lora_B`` keys missing. They are frozen here.

    States:

    * ``merged`` -- ``W`` already contains ``scaling · B·A`` (see :meth:`merge`); the forward pass is a
      single ``F.linear``, the cost of the base layer. Merge for inference; unmerge to train again.
    * ``disabled`` -- the update is skipped: the layer computes exactly the base layer.
    """

    def __init__(self, base: nn.Linear, r: int, lora_alpha: float, lora_dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        if problem := _lora_problem(r, lora_alpha, lora_dropout):
            raise ConfigError(problem)
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.r = int(r)
        self.lora_alpha = float(lora_alpha)
        self.scaling = self.lora_alpha / self.r

        # The frozen base: the very same Parameter objects as the wrapped layer, under the same names.
        self.weight = base.weight  # (out, in)
        self.bias = base.bias  # (out,) or None
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)

        # The trainable update, created on the base weight's device and in its dtype.
        factory = dict(device=self.weight.device, dtype=self.weight.dtype)
        self.lora_A = nn.Linear(self.in_features, self.r, bias=False, **factory)  # weight (r, in)
        self.lora_B = nn.Linear(self.r, self.out_features, bias=False, **factory)  # weight (out, r)
        self.lora_dropout = nn.Dropout(float(lora_dropout)) if lora_dropout > 0 else nn.Identity()
        self.reset_lora_parameters()

        self.merged = False
        self.disabled = False
        self.train(base.training)  # a layer wrapped inside an eval() model stays in eval mode (no dropout)

    @property
    def lora_dropout_p(self) -> float:
        """The dropout probability on the update's input (0.0 when ``lora_dropout`` is an Identity)."""
        return float(self.lora_dropout.p) if isinstance(self.lora_dropout, nn.Dropout) else 0.0

    def reset_lora_parameters(self) -> None:
        """A like ``nn.Linear``'s default (Kaiming-uniform, a=√5); B = 0, so ΔW = 0 at the start."""
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def delta_weight(self) -> torch.Tensor:
        """The update in ``nn.Linear``'s layout: ΔW = scaling · B·A, shape (out, in)."""
        return self.scaling * (self.lora_B.weight @ self.lora_A.weight)  # (out, r) @ (r, in) -> (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged or self.disabled:
            if self.merged and self.disabled:
                raise RuntimeError("a merged LoRA layer cannot be disabled; call unmerge_lora(model) first")
            return F.linear(x, self.weight, self.bias)  # merged: ΔW is already inside W, no extra matmuls
        if self.lora_dropout_p > 0 and self.training:
            # The definition, term by term: base(x) + scaling · B(A(dropout(x))).
            y = F.linear(x, self.weight, self.bias)  # (..., in) -> (..., out): the frozen base layer
            h = self.lora_A(self.lora_dropout(x))  # (..., in) -> (..., r)
            return y + self.scaling * self.lora_B(h)  # (..., r) -> (..., out)
        # Without dropout the same sum is x·(W + scaling·B·A)ᵀ + b: one matmul of the base layer's size,
        # with a backward pass that never forms W's gradient (see _LowRankUpdateLinear).
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else self.weight.dtype
        return _LowRankUpdateLinear.apply(x.to(dtype), self.weight, self.bias, self.lora_A.weight, self.lora_B.weight, self.scaling)

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + ΔW. Merging a merged layer does nothing."""
        if not self.merged:
            self.weight.add_(self.delta_weight().to(self.weight.dtype))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W - ΔW: restores the base weight up to floating-point rounding. No-op if not merged."""
        if self.merged:
            self.weight.sub_(self.delta_weight().to(self.weight.dtype))
            self.merged = False

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"r={self.r}, lora_alpha={self.lora_alpha:g}, scaling={self.scaling:g}, "
            f"lora_dropout={self.lora_dropout_p:g}, merged={self.merged}, disabled={self.disabled}"
        )


# ---------------------------------------------------------------------------------------------
# Choosing layers and applying LoRA


@dataclass
class LoRAConfig:
    """What :func:`apply_lora` did; kept on the model as ``model.lora_config`` and saved with adapters.

    Field names mirror PEFT's ``adapter_config.json``. ``target_modules`` and ``modules_to_save`` are
    exact qualified module names (``"blocks.0.attn.q_proj"``, ``"head"``), not patterns.
    """

    r: int
    lora_alpha: float
    lora_dropout: float = 0.0
    target_modules: list[str] = field(default_factory=list)
    modules_to_save: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _in_blocks(name: str) -> bool:
    """True for modules inside a container called ``blocks`` (``blocks.0.attn.q_proj``, ``gpt.blocks.1.mlp.fc``)."""
    return "blocks" in name.split(".")[:-1]


def _name_matches(name: str, pattern: str) -> bool:
    """fnmatch on the qualified name; a pattern also matches as a suffix after a dot, like PEFT:
    ``"q_proj"`` and ``"attn.q_proj"`` both match ``"blocks.0.attn.q_proj"`` (``"head"`` does not match ``"lm_head"``)."""
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, "*." + pattern)


def _ancestors(name: str) -> list[str]:
    """``"a.b.c"`` -> ``["", "a", "a.b", "a.b.c"]``: the module itself and every module containing it."""
    parts = name.split(".")
    return [""] + [".".join(parts[: i + 1]) for i in range(len(parts))]


def _select(model: nn.Module, targets: Sequence, what: str, kinds: tuple[type, ...] | None) -> list[str]:
    """Qualified names of the modules chosen by ``targets`` (patterns or types).

    A module is chosen when it, or a module containing it, matches a target: by name pattern (see
    :func:`_name_matches`) or by type (``isinstance``). With ``kinds``, only modules of those types
    are returned (e.g. only ``nn.Linear`` for LoRA). A target that chooses nothing is an error.
    """
    modules = dict(model.named_modules())

    def hit(name: str, target) -> bool:
        if isinstance(target, str):
            return any(anc != "" and _name_matches(anc, target) for anc in _ancestors(name))
        return any(isinstance(modules[anc], target) for anc in _ancestors(name))

    candidates = [n for n, m in modules.items() if n != "" and (kinds is None or isinstance(m, kinds))]
    for target in targets:
        if not any(hit(n, target) for n in candidates):
            label, kind = (target if isinstance(target, str) else target.__name__), (" nn.Linear" if kinds == (nn.Linear,) else "")
            raise ConfigError(f"{what} {label!r} matches no{kind} module of this model; check the name (e.g. 'q_proj', 'blocks.1.*')")
    return [n for n in candidates if any(hit(n, target) for target in targets)]


def _as_target_list(targets, what: str) -> list:
    """``targets`` (a pattern, an nn.Module subclass, or an iterable of them) as a list; else ConfigError."""
    hint = f"{what} takes module-name patterns (str) or nn.Module subclasses, or a list of them"
    if isinstance(targets, (str, type)):
        targets = [targets]
    try:
        targets = list(targets)
    except TypeError:
        raise ConfigError(f"{hint}; got {targets!r}") from None
    for t in targets:
        if isinstance(t, str) and t.strip():
            continue
        if not (isinstance(t, type) and issubclass(t, nn.Module)):
            raise ConfigError(f"{hint}; got the item {t!r}")
    return targets


def apply_lora(
    model: nn.Module, r: int, lora_alpha: float, target_modules: str | type | Iterable | None = None,
    lora_dropout: float = 0.0, modules_to_save: str | type | Iterable | None = (), train_head: bool = False,
) -> nn.Module:  # fmt: skip
    """Wrap linear layers of ``model`` in :class:`LoRALinear`, **in place**, and freeze everything else.

    Args:
        r, lora_alpha: the update's rank and the scaling numerator (scaling = lora_alpha / r); both > 0.
        target_modules: which ``nn.Linear`` layers to wrap. ``None`` (default): every ``nn.Linear`` inside
            ``model.blocks`` -- heads such as ``lm_head`` or a classifier ``head`` are left out.
            Otherwise one or more module-name patterns (fnmatch on the qualified name, also matching
            as a dotted suffix: ``"q_proj"``, ``"*.attn.q_proj"``, ``"blocks.1.*"``, ``"head"``) or
            ``nn.Module`` types (``nn.Linear``, ``CausalSelfAttention``); these search the whole model,
            and a layer is wrapped when it or a module containing it matches. An empty list is an error.
        lora_dropout: dropout probability on the LoRA branch's input (training only), in [0, 1).
        modules_to_save: more modules (patterns or types, as for ``target_modules``) to keep fully trainable.
        train_head: keep the classification head (a module named ``head``, ``classifier`` or
            ``score``, outside the blocks) fully trainable. An error if the model has none.

    After the call only the LoRA factors and the modules asked for are trainable. The model gets a
    ``lora_config`` attribute (:class:`LoRAConfig`) recording what was done. Returns ``model`` itself.

    Raises :class:`~gpt.errors.ConfigError` -- before anything changes -- for a bad ``r``,
    ``lora_alpha`` or ``lora_dropout``; ``target_modules`` / ``modules_to_save`` of the wrong type, an
    empty ``target_modules`` or a pattern that matches nothing; a model that already has LoRA layers;
    a wrapped layer whose weight is tied to another parameter (merging would silently change that
    one too); or a module that is both LoRA-wrapped and fully trainable.
    """
    if problem := _lora_problem(r, lora_alpha, lora_dropout):  # before anything changes
        raise ConfigError(problem)
    if not isinstance(train_head, bool):
        raise ConfigError(f"train_head must be True or False, got {train_head!r}")
    if list(lora_layers(model)):
        raise ConfigError("this model already has LoRA layers; apply_lora works on a model without adapters")

    if target_modules is None:
        names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and _in_blocks(n)]
        if not names:
            raise ConfigError("the model has no nn.Linear inside a 'blocks' container; name the layers with target_modules=...")
    else:
        targets = _as_target_list(target_modules, "target_modules")
        if not targets:
            raise ConfigError("target_modules is empty, so LoRA would wrap nothing and train nothing; pass None "
                              "(every nn.Linear in the blocks) or name at least one layer, e.g. ['q_proj', 'v_proj']")
        names = _select(model, targets, "target_modules pattern", kinds=(nn.Linear,))
    to_save = _as_target_list(modules_to_save if modules_to_save is not None else (), "modules_to_save")
    return _apply(model, names, r, lora_alpha, lora_dropout, _trainable_names(model, names, train_head, to_save))


def _trainable_names(model: nn.Module, lora_names: list[str], train_head: bool, to_save: list) -> list[str]:
    """Qualified names of the modules to keep fully trainable (outermost only, no duplicates)."""
    wanted = _select(model, to_save, "modules_to_save pattern", kinds=None) if to_save else []
    if train_head:
        heads = [n for n, _ in model.named_modules() if n.split(".")[-1] in HEAD_NAMES and not _in_blocks(n)]
        if not heads:
            raise ConfigError(f"train_head=True but the model has no module named one of {HEAD_NAMES}; add a head or drop train_head")
        wanted += heads
    # Keep only the outermost of nested names ("head" rather than "head" and "head.0").
    wanted = [n for n in dict.fromkeys(wanted) if not any(n != o and n.startswith(o + ".") for o in wanted)]
    for n in wanted:
        if n in lora_names or any(n.startswith(t + ".") or t.startswith(n + ".") for t in lora_names):
            raise ConfigError(f"module {n!r} is both LoRA-wrapped and asked to be fully trainable; choose one")
    return wanted


def _apply(model: nn.Module, names: list[str], r, lora_alpha, lora_dropout, trainable: list[str]) -> nn.Module:
    """Wrap exactly the Linear layers ``names``, freeze the rest, unfreeze ``trainable`` modules."""
    # A weight shared with another module (GPT's lm_head is tok_emb's matrix) must not be wrapped:
    # merging ΔW into it would change the embedding too.
    owners: dict[int, list[str]] = {}
    for pname, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), []).append(pname)
    for name in names:
        shared = owners[id(model.get_submodule(name).weight)]
        if len(shared) > 1:
            raise ConfigError(
                f"{name}.weight is tied to {[s for s in shared if s != name + '.weight']} (shared weights); "
                "LoRA on it would also change the tied tensor. Untie it (tie_weights=False) or leave it out."
            )

    model.requires_grad_(False)  # freeze everything, then wrap (LoRA factors start trainable)
    for name in names:
        model.set_submodule(name, LoRALinear(model.get_submodule(name), r, lora_alpha, lora_dropout))
    for name in trainable:
        model.get_submodule(name).requires_grad_(True)
    model.lora_config = LoRAConfig(
        r=int(r), lora_alpha=float(lora_alpha), lora_dropout=float(lora_dropout), target_modules=list(names), modules_to_save=list(trainable)
    )
    return model


def lora_layers(model: nn.Module) -> Iterator[tuple[str, LoRALinear]]:
    """(qualified name, layer) for every :class:`LoRALinear` in ``model`` (found by type)."""
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            yield name, module


# ---------------------------------------------------------------------------------------------
# Merging and disabling


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight (W <- W + scaling·B·A); already merged layers are skipped.

    A merged layer's forward is one ``F.linear``, the base model's cost. Returns ``model``.
    """
    for _, layer in lora_layers(model):
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Undo :func:`merge_lora` (W <- W - scaling·B·A, exact up to fp rounding); unmerged layers are skipped."""
    for _, layer in lora_layers(model):
        layer.unmerge()
    return model


@contextmanager
def disable_lora(model: nn.Module):
    """Within the block every adapter is skipped, so the model computes exactly the base model.

    ``with disable_lora(model): base_logits = model(x)``. Each layer's previous state is restored on
    exit. A merged model cannot be disabled (its W already contains ΔW): unmerge it first.
    """
    layers = [layer for _, layer in lora_layers(model)]
    merged = [name for name, layer in lora_layers(model) if layer.merged]
    if merged:
        raise RuntimeError(f"cannot disable merged LoRA layers ({merged[0]}, ...); call unmerge_lora(model) first")
    before = [layer.disabled for layer in layers]
    for layer in layers:
        layer.disabled = True
    try:
        yield model
    finally:
        for layer, was in zip(layers, before):
            layer.disabled = was


lora_disabled = disable_lora  # alias


# ---------------------------------------------------------------------------------------------
# Counting


_BLOCK_PREFIX = re.compile(r"^(?:.*\.)?blocks\.\d+\.")


def count_lora_parameters(model: nn.Module) -> dict:
    """Parameter counts of a (LoRA) model; a tied weight counts once.

    Returns ``{"trainable": n, "total": n, "trainable_fraction": f, "lora": n, "by_layer_type": {...}}``
    where ``by_layer_type`` maps a layer type (block index dropped: ``"blocks.3.attn.q_proj"`` ->
    ``"attn.q_proj"``) to its trainable parameters, e.g. ``{"attn.q_proj": 2 * r * (C + C), ...,
    "head": C * 2 + 2}``. For a LoRA layer that is r·(in + out).
    """
    lora_ids = {id(p) for _, layer in lora_layers(model) for p in (layer.lora_A.weight, layer.lora_B.weight)}
    trainable = total = lora = 0
    by_type: dict[str, int] = {}
    for pname, p in model.named_parameters():  # yields a shared tensor once
        total += p.numel()
        if id(p) in lora_ids:
            lora += p.numel()
        if not p.requires_grad:
            continue
        trainable += p.numel()
        module_name = pname.rpartition(".")[0]
        if id(p) in lora_ids:  # "blocks.0.attn.q_proj.lora_A" -> the wrapped layer "blocks.0.attn.q_proj"
            module_name = module_name.rpartition(".")[0]
        key = _BLOCK_PREFIX.sub("", module_name) or pname
        by_type[key] = by_type.get(key, 0) + p.numel()
    return {"trainable": trainable, "total": total, "trainable_fraction": trainable / total if total else 0.0, "lora": lora, "by_layer_type": by_type}


# ---------------------------------------------------------------------------------------------
# Adapter files: saving, reading, loading


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (the data layer's :func:`gpt.data.sha256_file`)."""
    from .data import sha256_file

    return sha256_file(Path(path))


def _base_sha256(base_checkpoint) -> str | None:
    """sha256 of a base checkpoint given as a file path, or a 64-hex-digit digest passed through."""
    if base_checkpoint is None:
        return None
    if Path(base_checkpoint).is_file():
        return file_sha256(base_checkpoint)
    if isinstance(base_checkpoint, str) and re.fullmatch(r"[0-9a-fA-F]{64}", base_checkpoint):
        return base_checkpoint.lower()
    raise AdapterError(f"base checkpoint {str(base_checkpoint)!r} is neither a file nor a sha256 digest; give the base model's .safetensors file")


def _model_config(model: nn.Module) -> dict | None:
    """The GPTConfig (as a dict) of ``model`` or of the first submodule that has one (a classifier's ``gpt``)."""
    for m in model.modules():
        cfg = getattr(m, "config", None)
        if hasattr(cfg, "to_dict"):
            return cfg.to_dict()
    return None


def _adapter_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors an adapter file holds: LoRA factors + deliberately trainable non-LoRA parameters."""
    layers = list(lora_layers(model))
    lora_ids = {id(p) for _, layer in layers for p in (layer.lora_A.weight, layer.lora_B.weight)}
    keep: dict[str, torch.Tensor] = {}
    for name, layer in layers:
        keep[f"{name}.lora_A.weight"] = layer.lora_A.weight  # (r, in)
        keep[f"{name}.lora_B.weight"] = layer.lora_B.weight  # (out, r)
    cfg = getattr(model, "lora_config", None)
    for mod in cfg.modules_to_save if cfg else []:
        for pname, p in model.get_submodule(mod).named_parameters():
            keep.setdefault(f"{mod}.{pname}", p)
    for pname, p in model.named_parameters():  # anything else the user unfroze by hand
        if p.requires_grad and id(p) not in lora_ids and all(p is not q for q in keep.values()):
            keep[pname] = p
    return keep


def save_adapter(
    model: nn.Module, path: str | os.PathLike, base_checkpoint: str | os.PathLike | None = None,
    extra: dict | None = None, *, overwrite: bool = False,
) -> Path:  # fmt: skip
    """Write the adapter into the folder ``path`` (``adapter_model.safetensors`` + ``adapter_config.json``).

    ``base_checkpoint``: the base model's .safetensors file (its sha256 is recorded, so loading onto
    another base fails) or that sha256. ``extra``: a dict of JSON-serialisable metadata (labels,
    metrics); anything else is a ConfigError. Saving a merged model is fine. Returns the folder.

    Nothing is lost: an existing non-empty ``path`` raises OutputExistsError unless ``overwrite=True``
    (a folder holding more than an adapter's two files is refused even then); the output is checked
    before anything is serialised, and both files appear in one rename (:func:`gpt.files.atomic_dir`),
    so a crash leaves the previous adapter intact. Tensors holding NaN or inf (training diverged) are
    refused with AdapterError -- such an adapter is useless -- and nothing is written.
    """
    layers = list(lora_layers(model))
    if not layers:
        raise AdapterError("the model has no LoRA layers: nothing to save (call apply_lora first)")
    settings = {(layer.r, layer.lora_alpha, layer.lora_dropout_p) for _, layer in layers}
    if len(settings) > 1:
        raise AdapterError(f"layers use different (r, lora_alpha, lora_dropout) {sorted(settings)}; one adapter file holds one setting")
    r, lora_alpha, lora_dropout = settings.pop()
    if extra is not None and not isinstance(extra, dict):
        raise ConfigError(f"extra must be a dict of JSON-serialisable metadata, got {type(extra).__name__}")
    try:
        json.dumps(extra or {}, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"extra is not JSON-serialisable ({e}); pass plain str, numbers, lists and dicts, e.g. str(path), float(x)") from e
    folder = check_output(path, kind="dir", overwrite=overwrite, flag="overwrite=True")  # before any work
    if folder.is_dir():
        others = sorted(p.name for p in folder.iterdir() if p.name not in (ADAPTER_WEIGHTS_NAME, ADAPTER_CONFIG_NAME))
        if others:
            raise OutputExistsError(f"{folder} holds files that are not part of an adapter ({others[:3]}); save the adapter into its own folder")
    sha = _base_sha256(base_checkpoint)

    tensors = {k: v.detach().contiguous().cpu() for k, v in _adapter_tensors(model).items()}
    for key, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise AdapterError(f"adapter tensor {key!r} holds NaN or inf (training diverged); nothing was saved. Train again, e.g. with a lower learning rate")
    cfg = getattr(model, "lora_config", None)
    config = {
        "format": ADAPTER_FORMAT,
        "format_version": ADAPTER_FORMAT_VERSION,
        "r": r,
        "lora_alpha": lora_alpha,
        "lora_dropout": lora_dropout,
        "target_modules": [name for name, _ in layers],
        "modules_to_save": list(cfg.modules_to_save) if cfg else [],
        "bias": "none",
        "base_model_name_or_path": Path(base_checkpoint).name if sha and Path(base_checkpoint).is_file() else None,
        "base_model_sha256": sha,
        "gpt_config": _model_config(model),
        "tensors": {k: list(v.shape) for k, v in tensors.items()},
        "extra": extra or {},
    }
    text = json.dumps(config, indent=2, allow_nan=False)
    with atomic_dir(folder, overwrite=overwrite, flag="overwrite=True") as tmp:
        save_file(tensors, str(tmp / ADAPTER_WEIGHTS_NAME), metadata={"format": ADAPTER_FORMAT})
        (tmp / ADAPTER_CONFIG_NAME).write_text(text + "\n")
    return folder


def _check_adapter_config(config, source: Path) -> None:
    """AdapterError naming the key and ``source`` for anything :func:`load_adapter` could not use."""
    if not isinstance(config, dict):
        raise AdapterError(f"{source} holds a JSON {type(config).__name__}, not an adapter config object")
    if config.get("format") != ADAPTER_FORMAT:
        raise AdapterError(f"{source} is not a {ADAPTER_FORMAT} adapter config (format={config.get('format')!r}); give a folder written by save_adapter")
    for key in ("r", "lora_alpha", "target_modules"):
        if key not in config:
            raise AdapterError(f"{source} lacks the key {key!r}; the file is damaged or incomplete: save the adapter again")
    problem = _lora_problem(config["r"], config["lora_alpha"], config.get("lora_dropout", 0.0))
    if problem:
        raise AdapterError(f"{source}: {problem}; the file is damaged: save the adapter again")

    def names(key: str) -> bool:
        v = config.get(key)
        return isinstance(v, list) and all(isinstance(s, str) and s for s in v) and len(set(v)) == len(v)

    if not names("target_modules") or not config["target_modules"]:
        raise AdapterError(f"{source}: 'target_modules' must be a non-empty list of distinct module names, got {config['target_modules']!r}")
    if config.get("modules_to_save") is not None and not names("modules_to_save"):
        raise AdapterError(f"{source}: 'modules_to_save' must be a list of distinct module names, got {config['modules_to_save']!r}")
    for key, kind in (("gpt_config", dict), ("tensors", dict), ("base_model_sha256", str)):
        if config.get(key) is not None and not isinstance(config[key], kind):
            raise AdapterError(f"{source}: {key!r} must be a {kind.__name__} or null, got {config[key]!r}")


def read_adapter(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, tensors) of an adapter folder written by :func:`save_adapter` (or one of its two files).

    Both are checked: :class:`AdapterError`, naming the file, for a missing folder or file, invalid
    JSON, a damaged safetensors file, a missing or bad config key, tensors that disagree with the
    config's ``tensors`` list, or a tensor that is not floating point or holds NaN/inf.
    """
    folder = Path(path)
    if folder.is_file():
        if folder.name not in (ADAPTER_WEIGHTS_NAME, ADAPTER_CONFIG_NAME):
            raise AdapterError(f"{folder} is a file, not an adapter; give the folder save_adapter wrote ({ADAPTER_CONFIG_NAME} + {ADAPTER_WEIGHTS_NAME})")
        folder = folder.parent
    if not folder.is_dir():
        raise AdapterError(f"adapter folder {folder} does not exist; check the path")
    cfg_file, weights_file = folder / ADAPTER_CONFIG_NAME, folder / ADAPTER_WEIGHTS_NAME
    for f in (cfg_file, weights_file):
        if not f.is_file():
            raise AdapterError(f"{f} does not exist: {folder} is not a complete adapter folder")
    try:
        config = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # unreadable, not UTF-8, or not JSON
        raise AdapterError(f"{cfg_file} is not valid JSON ({e}); the file is damaged: save the adapter again") from e
    _check_adapter_config(config, cfg_file)
    try:
        tensors = load_file(str(weights_file))
    except Exception as e:  # safetensors raises several types for a truncated or garbage file
        raise AdapterError(f"{weights_file} is damaged or not a safetensors file ({e}); save the adapter again") from e

    listed = config.get("tensors")
    on_disk = {k: list(t.shape) for k, t in tensors.items()}
    if listed is not None and listed != on_disk:
        k = min(k for k in set(listed) | set(on_disk) if listed.get(k) != on_disk.get(k))
        raise AdapterError(f"{weights_file} does not match {cfg_file}: tensor {k!r} has shape {on_disk.get(k, 'missing')} in "
                           f"the weights and {listed.get(k, 'missing')} in the config; the files come from different saves")
    for key, t in tensors.items():
        if not t.is_floating_point():
            raise AdapterError(f"adapter tensor {key!r} in {weights_file} has dtype {t.dtype}; adapter tensors are floating point")
        if not bool(torch.isfinite(t).all()):
            raise AdapterError(f"adapter tensor {key!r} in {weights_file} holds NaN or inf; the adapter is unusable: train and save it again")
    return config, tensors


def load_adapter(model: nn.Module, path: str | os.PathLike, base_checkpoint: str | os.PathLike | None = None) -> nn.Module:
    """Load an adapter saved by :func:`save_adapter` into ``model`` (in place) and return it.

    A model without LoRA layers gets them first (the saved ``r``, ``lora_alpha``, ``lora_dropout``,
    ``target_modules``, ``modules_to_save``). Everything is checked before any weight changes; an
    AdapterError names the problem: anything :func:`read_adapter` refuses, a ``base_checkpoint`` with
    another sha256 than at save time, a GPTConfig that differs from the saved ``gpt_config``
    (``RUNTIME_FIELDS`` excepted), a layer the model lacks, a missing, unexpected or mis-shaped tensor,
    LoRA layers with another ``r`` / ``lora_alpha``, or a merged model (unmerge first).
    """
    config, tensors = read_adapter(path)
    saved_sha, sha = config.get("base_model_sha256"), _base_sha256(base_checkpoint)
    if sha is not None and saved_sha is not None and sha != saved_sha.lower():
        raise AdapterError(
            f"adapter {path} was trained on a base checkpoint with sha256 {saved_sha[:12]}..., but "
            f"{base_checkpoint} has sha256 {sha[:12]}...: a different base model; load the base it was trained on"
        )
    if sha is not None and saved_sha is None:
        warnings.warn(f"adapter {path} records no base checkpoint sha256; cannot check the base model", stacklevel=2)
    saved_cfg, model_cfg = config.get("gpt_config"), _model_config(model)
    if saved_cfg and model_cfg:
        diff = [k for k in saved_cfg if k in model_cfg and k not in RUNTIME_FIELDS and saved_cfg[k] != model_cfg[k]]
        if diff:
            shown = ", ".join(f"{k}={saved_cfg[k]!r} (the model has {model_cfg[k]!r})" for k in diff)
            raise AdapterError(f"adapter {path} was trained on a model with {shown}: another architecture; load it into the model it was trained on")

    r, lora_alpha, lora_dropout = config["r"], config["lora_alpha"], config.get("lora_dropout", 0.0)
    targets, to_save = list(config["target_modules"]), list(config.get("modules_to_save") or [])
    existing = dict(lora_layers(model))
    modules = dict(model.named_modules())
    expected = {k: tuple(p.shape) for k, p in model.named_parameters(remove_duplicate=False)}  # key -> shape
    if existing:
        if sorted(existing) != sorted(targets):
            raise AdapterError(f"the model's LoRA layers {sorted(existing)[:3]}... differ from the adapter's {sorted(targets)[:3]}...")
        for name, layer in existing.items():
            if layer.merged:
                raise AdapterError(f"LoRA layer {name} is merged; call unmerge_lora(model) before loading an adapter")
            if (layer.r, layer.lora_alpha) != (r, float(lora_alpha)):
                raise AdapterError(f"LoRA layer {name} has r={layer.r}, lora_alpha={layer.lora_alpha:g}; the adapter has r={r}, lora_alpha={lora_alpha:g}")
    else:
        for name in targets + to_save:
            if name not in modules:
                raise AdapterError(f"the adapter targets module {name!r}, which this model does not have")
        for name in targets:
            m = modules[name]
            if not isinstance(m, nn.Linear):
                raise AdapterError(f"the adapter targets {name!r}, which is a {type(m).__name__}, not an nn.Linear")
            expected[f"{name}.lora_A.weight"] = (r, m.in_features)
            expected[f"{name}.lora_B.weight"] = (m.out_features, r)

    # Check every tensor before touching the model.
    for key, t in tensors.items():
        if key not in expected:
            raise AdapterError(f"adapter tensor {key!r} has no counterpart in this model")
        if tuple(t.shape) != expected[key]:
            raise AdapterError(f"adapter tensor {key!r} has shape {tuple(t.shape)}, the model expects {expected[key]}")
    needed = [f"{name}.lora_{ab}.weight" for name in targets for ab in "AB"]
    needed += [f"{mod}.{pname}" for mod in to_save if mod in modules for pname, _ in modules[mod].named_parameters()]
    for key in needed:
        if key not in tensors:
            raise AdapterError(f"adapter file lacks tensor {key!r}; the adapter is incomplete: save it again")

    if not existing:
        _apply(model, targets, r, lora_alpha, lora_dropout, to_save)
    params = dict(model.named_parameters(remove_duplicate=False))
    with torch.no_grad():
        for key, t in tensors.items():
            params[key].copy_(t.to(dtype=params[key].dtype, device=params[key].device))
    return model
