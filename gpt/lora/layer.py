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
    save_adapter(model, "runs/spam-lora", base_checkpoint=...)   # gpt.io.adapters: the factors, in a small file
    merge_lora(model)                                # W <- W + scaling·B·A: inference at the base model's cost

Variants, with PEFT's option names (their maths is :mod:`gpt.lora.variants`): ``use_rslora=True``
(scaling = lora_alpha / √r), ``use_dora=True`` (a trained magnitude per output row,
``lora_magnitude_vector``, times the direction of W + ΔW), ``init_lora_weights="gaussian"`` or
``"pissa"`` (A and B start as W's principal singular directions; W keeps the residual). LoRA+ (a
larger learning rate for B) is an optimizer setting: :func:`gpt.lora.variants.lora_plus_param_groups`.

Adapter files (saving a trained adapter, loading it onto a base model, PEFT's format) are :mod:`gpt.io.adapters`.

Bad arguments raise :class:`~gpt.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_bool, check_number, check_whole_number
from ..errors import ConfigError
from ..runtime.lowrank import low_rank_update_linear
from .variants import INIT_LORA_WEIGHTS, dora_weight_norm, lora_scaling, pissa_factors

__all__ = [
    "LoRAConfig", "LoRALinear", "apply_lora", "check_lora_rank", "lora_layers", "merge_lora", "unmerge_lora",
    "disable_lora", "lora_disabled", "count_lora_parameters", "lora_parameters",
]  # fmt: skip


# Names a classification head may have (``train_head=True`` looks for a module called one of these).
HEAD_NAMES = ("head", "classifier", "score")


def check_lora_settings(r, lora_alpha, lora_dropout, use_rslora=False, use_dora=False, init_lora_weights="kaiming") -> None:
    """A :class:`~gpt.errors.ConfigError` naming the first of these LoRA settings that cannot work (:mod:`gpt.checks`)."""
    check_whole_number("r (the LoRA rank)", r, minimum=1)  # numpy ints welcome
    check_number("lora_alpha", lora_alpha, low=0.0, low_open=True)
    check_number("lora_dropout", lora_dropout, low=0.0, high=1.0, high_open=True)
    check_bool("use_rslora", use_rslora)
    check_bool("use_dora", use_dora)
    if init_weights_name(init_lora_weights) not in INIT_LORA_WEIGHTS:
        raise ConfigError(f"init_lora_weights must be one of {list(INIT_LORA_WEIGHTS)} (True means 'kaiming', as in PEFT), got {init_lora_weights!r}")


def check_lora_rank(r: int, width: int | None, source: str = "the model", layer: str | None = None) -> None:
    """LoRA's rank is bounded by the layers it adapts: refuse (:class:`~gpt.errors.ConfigError`) ``r`` above
    ``width``, the smallest ``min(in, out)`` of the layers (``n_embd`` for every Linear of a GPT block).
    ``layer``: the one layer (its name and shape) that sets the bound, named in the message."""
    if width is None or r <= width:
        return
    what = (f"the layer {layer} of {source} allows: its min(in, out) is {width}" if layer
            else f"the layers of {source} allow: its adapted layers are {width} wide")
    raise ConfigError(
        f"r (the LoRA rank, --rank) {r} is larger than {what}, so B·A reaches full rank at r = {width} and a larger r only adds "
        f"parameters (r·(in + out) per layer). Choose r <= {width}"
    )


def init_weights_name(init_lora_weights) -> str | None:
    """PEFT's ``init_lora_weights=True`` is our "kaiming"; strings are case-insensitive."""
    if init_lora_weights is True:
        return "kaiming"
    return init_lora_weights.lower() if isinstance(init_lora_weights, str) else None


# ---------------------------------------------------------------------------------------------
# The layer


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``scaling · B·A``.

    Attributes: ``r`` (rank), ``lora_alpha``, ``scaling`` (= lora_alpha / r, or lora_alpha / √r with
    ``use_rslora``), ``lora_A`` / ``lora_B`` (the factors), ``lora_dropout`` (the dropout *module* on the
    update's input: ``nn.Dropout`` or, for probability 0, ``nn.Identity``, as in PEFT), ``lora_dropout_p``
    (its probability, a float), ``use_rslora``, ``use_dora``, ``init_lora_weights``.

    Variants (PEFT's names, maths in :mod:`gpt.lora.variants`):

    * ``use_dora=True`` adds the trained vector ``lora_magnitude_vector`` (out,), initialised to the
      row norms of W, and computes ``m ⊙ (W + ΔW) / ‖W + ΔW‖`` (the norm a constant for the backward pass).
    * ``init_lora_weights="gaussian"``: A ~ N(0, (1/r)²); ``"pissa"``: A, B from W's top-r singular
      directions and ``weight`` replaced by the residual W − scaling·B·A (the start factors are kept as
      the buffers ``lora_A_init`` / ``lora_B_init``, not in the state dict, so that
      :func:`gpt.io.adapters.save_adapter` can write the adapter for the untouched W).

    The wrapped layer's ``weight`` (out, in) and ``bias`` (out,) Parameters are registered on this
    module under the same names (not as ``base.weight``), so a plain model's state dict loads into a
    LoRA model with only the ``lora_A`` / ``lora_B`` keys missing. They are frozen here.

    States:

    * ``merged`` -- ``W`` already contains ``scaling · B·A`` (see :meth:`merge`); the forward pass is a
      single ``F.linear``, the cost of the base layer. Merge for inference; unmerge to train again.
    * ``disabled`` -- the update is skipped: the layer computes exactly the base layer.
    """

    IS_LORA_LAYER = True  # how gpt.lora.variants.lora_plus_param_groups finds LoRA layers by type

    def __init__(self, base: nn.Linear, r: int, lora_alpha: float, lora_dropout: float = 0.0, *,
                 use_rslora: bool = False, use_dora: bool = False, init_lora_weights: str | bool = "kaiming"):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        check_lora_settings(r, lora_alpha, lora_dropout, use_rslora, use_dora, init_lora_weights)
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.r = int(r)
        self.lora_alpha = float(lora_alpha)
        self.use_rslora, self.use_dora, self.init_lora_weights = use_rslora, use_dora, init_weights_name(init_lora_weights)
        self.scaling = lora_scaling(self.lora_alpha, self.r, use_rslora)

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
        if self.init_lora_weights == "pissa":
            self._pissa_init()
        else:
            self.reset_lora_parameters()
        if use_dora:  # the magnitude of each output row of W + ΔW at the start (ΔW = 0, or W_res + ΔW = W for PiSSA)
            with torch.no_grad():
                norm = dora_weight_norm(self.weight.float(), self.delta_weight().float()).to(self.weight.dtype)
            self.lora_magnitude_vector = nn.Parameter(norm)  # (out,)
        self._dora_norm_merged = None  # DoRA: the row norms used by merge(), needed again by unmerge()

        self.merged = False
        self.disabled = False
        self.train(base.training)  # a layer wrapped inside an eval() model stays in eval mode (no dropout)

    @property
    def lora_dropout_p(self) -> float:
        """The dropout probability on the update's input (0.0 when ``lora_dropout`` is an Identity)."""
        return float(self.lora_dropout.p) if isinstance(self.lora_dropout, nn.Dropout) else 0.0

    def reset_lora_parameters(self) -> None:
        """A like ``nn.Linear``'s default (Kaiming-uniform, a=√5), or N(0, (1/r)²) for ``"gaussian"``;
        B = 0, so ΔW = 0 at the start. (PiSSA's start changes W: it is done once, in ``__init__``.)"""
        if self.init_lora_weights == "pissa":
            raise ConfigError("a PiSSA layer's start moved part of W into A and B; it cannot be reset. Wrap the original nn.Linear again")
        if self.init_lora_weights == "gaussian":
            nn.init.normal_(self.lora_A.weight, std=1 / self.r)
        else:
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    @torch.no_grad()
    def _pissa_init(self) -> None:
        """A, B <- W's principal part; W <- the residual (:func:`gpt.lora.variants.pissa_factors`)."""
        if self.r > min(self.in_features, self.out_features):
            raise ConfigError(f"init_lora_weights='pissa' needs r <= min(in, out) = {min(self.in_features, self.out_features)}, got r={self.r}")
        A, B, residual = pissa_factors(self.weight, self.r, self.scaling)
        self.lora_A.weight.copy_(A)
        self.lora_B.weight.copy_(B)
        self.weight.copy_(residual)  # the very Parameter of the wrapped layer: the wrapped model's W is now W_res
        self.register_buffer("lora_A_init", A.clone(), persistent=False)
        self.register_buffer("lora_B_init", B.clone(), persistent=False)

    def delta_weight(self) -> torch.Tensor:
        """The update in ``nn.Linear``'s layout: ΔW = scaling · B·A, shape (out, in)."""
        return self.scaling * (self.lora_B.weight @ self.lora_A.weight)  # (out, r) @ (r, in) -> (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged or self.disabled:
            if self.merged and self.disabled:
                raise RuntimeError("a merged LoRA layer cannot be disabled; call unmerge_lora(model) first")
            if self.disabled and self.init_lora_weights == "pissa":  # the untouched base: W_res + s·B0·A0 = W
                return F.linear(x, self.weight + self.scaling * (self.lora_B_init @ self.lora_A_init), self.bias)
            return F.linear(x, self.weight, self.bias)  # merged: ΔW is already inside W, no extra matmuls
        if self.use_dora:
            return self._dora_forward(x)
        if self.lora_dropout_p > 0 and self.training:
            # The definition, term by term: base(x) + scaling · B(A(dropout(x))).
            y = F.linear(x, self.weight, self.bias)  # (..., in) -> (..., out): the frozen base layer
            h = self.lora_A(self.lora_dropout(x))  # (..., in) -> (..., r)
            return y + self.scaling * self.lora_B(h)  # (..., r) -> (..., out)
        # Without dropout: the same sum, with a backward pass that never forms W's gradient and keeps
        # no weight-sized copy (gpt.runtime.lowrank).
        return low_rank_update_linear(x, self.weight, self.bias, self.lora_A.weight, self.lora_B.weight, self.scaling)

    def _dora_forward(self, x: torch.Tensor) -> torch.Tensor:
        """DoRA: ``(m / ‖W + ΔW‖) ⊙ (x·(W + ΔW)ᵀ) + b``, the norm detached; with dropout on, PEFT's form
        ``base(x) + (m/‖·‖ − 1) ⊙ x'·Wᵀ + (m/‖·‖) ⊙ s·B·A·x'`` with ``x' = dropout(x)``."""
        delta = self.delta_weight()  # (out, in), gradients flow to A and B
        factor = self.lora_magnitude_vector / dora_weight_norm(self.weight, delta).detach()  # (out,)
        if self.lora_dropout_p > 0 and self.training:
            xd = self.lora_dropout(x)
            lora = self.scaling * self.lora_B(self.lora_A(xd))
            return F.linear(x, self.weight, self.bias) + (factor - 1) * F.linear(xd, self.weight) + factor * lora
        y = F.linear(x, self.weight + delta)  # (..., out)
        return factor * y if self.bias is None else factor * y + self.bias

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + ΔW (DoRA: W <- m/‖W + ΔW‖ ⊙ (W + ΔW)). Merging a merged layer does nothing."""
        if self.merged:
            return
        delta = self.delta_weight().to(self.weight.dtype)
        if self.use_dora:
            self._dora_norm_merged = dora_weight_norm(self.weight, delta)
            factor = (self.lora_magnitude_vector / self._dora_norm_merged)[:, None]  # (out, 1)
            self.weight.copy_(factor * (self.weight + delta))
        else:
            self.weight.add_(delta)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W - ΔW (DoRA: W <- W / (m/‖·‖) - ΔW, with the norms of the merge): restores the base
        weight up to floating-point rounding. No-op if not merged."""
        if not self.merged:
            return
        delta = self.delta_weight().to(self.weight.dtype)
        if self.use_dora:
            factor = (self.lora_magnitude_vector / self._dora_norm_merged)[:, None]
            self.weight.copy_(self.weight / factor - delta)
            self._dora_norm_merged = None
        else:
            self.weight.sub_(delta)
        self.merged = False

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"r={self.r}, lora_alpha={self.lora_alpha:g}, scaling={self.scaling:g}, "
            f"lora_dropout={self.lora_dropout_p:g}, merged={self.merged}, disabled={self.disabled}"
            + (", use_rslora=True" if self.use_rslora else "") + (", use_dora=True" if self.use_dora else "")
            + (f", init_lora_weights={self.init_lora_weights!r}" if self.init_lora_weights != "kaiming" else "")
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
    use_rslora: bool = False
    use_dora: bool = False
    init_lora_weights: str = "kaiming"

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
    lora_dropout: float = 0.0, modules_to_save: str | type | Iterable | None = (), train_head: bool = False, *,
    use_rslora: bool = False, use_dora: bool = False, init_lora_weights: str | bool = "kaiming",
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
        use_rslora, use_dora, init_lora_weights: the variants of :class:`LoRALinear` (PEFT's names):
            scale lora_alpha / √r; a trained magnitude per output row; the start of A
            (``"kaiming"``, ``"gaussian"``) or of A, B and W (``"pissa"``).

    After the call only the LoRA factors and the modules asked for are trainable. The model gets a
    ``lora_config`` attribute (:class:`LoRAConfig`) recording what was done. Returns ``model`` itself.

    Raises :class:`~gpt.errors.ConfigError` -- before anything changes -- for a bad ``r``,
    ``lora_alpha`` or ``lora_dropout``; an ``r`` above ``min(in_features, out_features)`` of a layer
    to wrap (:func:`check_lora_rank`, naming the layer and the bound); ``target_modules`` / ``modules_to_save`` of the wrong type, an
    empty ``target_modules`` or a pattern that matches nothing; a model that already has LoRA layers;
    a wrapped layer whose weight is tied to another parameter (merging would silently change that
    one too); or a module that is both LoRA-wrapped and fully trainable.
    """
    check_lora_settings(r, lora_alpha, lora_dropout, use_rslora, use_dora, init_lora_weights)  # before anything changes
    check_bool("train_head", train_head)
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
    trainable = _trainable_names(model, names, train_head, to_save)
    for name in names:  # the rank is bounded by each layer's size
        layer = model.get_submodule(name)
        check_lora_rank(r, min(layer.in_features, layer.out_features), layer=f"{name} ({layer.out_features} x {layer.in_features})")
    variant = dict(use_rslora=use_rslora, use_dora=use_dora, init_lora_weights=init_weights_name(init_lora_weights))
    return wrap_layers(model, names, r, lora_alpha, lora_dropout, trainable, **variant)


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


def wrap_layers(model: nn.Module, names: list[str], r, lora_alpha, lora_dropout, trainable: list[str], *,
           use_rslora: bool = False, use_dora: bool = False, init_lora_weights: str = "kaiming") -> nn.Module:  # fmt: skip
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

    variant = dict(use_rslora=use_rslora, use_dora=use_dora, init_lora_weights=init_lora_weights)
    model.requires_grad_(False)  # freeze everything, then wrap (LoRA factors start trainable)
    for name in names:
        model.set_submodule(name, LoRALinear(model.get_submodule(name), r, lora_alpha, lora_dropout, **variant))
    for name in trainable:
        model.get_submodule(name).requires_grad_(True)
    model.lora_config = LoRAConfig(
        r=int(r), lora_alpha=float(lora_alpha), lora_dropout=float(lora_dropout), target_modules=list(names), modules_to_save=list(trainable),
        **variant,
    )
    return model


def lora_parameters(layer: LoRALinear) -> list[nn.Parameter]:
    """The trained tensors of one LoRA layer: ``lora_A.weight``, ``lora_B.weight`` (and DoRA's ``lora_magnitude_vector``)."""
    return [layer.lora_A.weight, layer.lora_B.weight] + ([layer.lora_magnitude_vector] if layer.use_dora else [])


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
    "head": C * 2 + 2}``. For a LoRA layer that is r·(in + out), plus out for DoRA's magnitude vector.
    """
    lora_ids = {id(p) for _, layer in lora_layers(model) for p in lora_parameters(layer)}
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
        if id(p) in lora_ids and not isinstance(model.get_submodule(module_name), LoRALinear):
            module_name = module_name.rpartition(".")[0]  # "blocks.0.attn.q_proj.lora_A" -> the wrapped layer "blocks.0.attn.q_proj"
        key = _BLOCK_PREFIX.sub("", module_name) or pname
        by_type[key] = by_type.get(key, 0) + p.numel()
    return {"trainable": trainable, "total": total, "trainable_fraction": trainable / total if total else 0.0, "lora": lora, "by_layer_type": by_type}
