"""LoRA: low-rank adapters that fine-tune a frozen model by training two small matrices per layer.

A linear layer computes ``y = x·Wᵀ + b`` with a weight ``W`` of shape (out, in). LoRA (Hu et al.,
2021) freezes ``W`` and learns a low-rank update instead::

    y = x·Wᵀ + b + scale · (x·Aᵀ)·Bᵀ        A: (r, in), B: (out, r), scale = alpha / r

The update ``ΔW = scale · B·A`` has shape (out, in) like ``W`` but only ``r·(in + out)`` numbers.
``B`` starts at zero, so a freshly wrapped model computes exactly what the base model computes.
The factors are stored the way the wider ecosystem (Hugging Face PEFT) stores them: ``lora_A`` is an
``nn.Linear(in, r)`` (weight (r, in)) and ``lora_B`` an ``nn.Linear(r, out)`` (weight (out, r)), so a
wrapped ``q_proj`` owns the state-dict keys ``q_proj.weight``, ``q_proj.bias``,
``q_proj.lora_A.weight`` and ``q_proj.lora_B.weight``.

Typical use::

    model = load_model("runs/course/model.safetensors")
    apply_lora(model, rank=8, alpha=16)             # wraps every nn.Linear in model.blocks, freezes the rest
    ...train...                                      # only lora_A / lora_B (and a head, if asked) change
    save_adapter(model, "runs/spam-lora", base_checkpoint="runs/course/model.safetensors")
    merge_lora(model)                                # W <- W + scale·B·A: inference at the base model's cost

Adapter files (a folder, PEFT-like):

* ``adapter_model.safetensors`` -- the LoRA factors (``<layer>.lora_A.weight``, ``<layer>.lora_B.weight``)
  plus every deliberately trainable non-LoRA tensor (e.g. a classification head ``head.weight``);
  keys are the model's own state-dict keys (PEFT prefixes them with ``base_model.model.``; we don't).
* ``adapter_config.json`` -- ``r``, ``lora_alpha``, ``lora_dropout``, ``target_modules`` (the exact
  qualified names of the wrapped layers), ``modules_to_save``, ``bias`` ("none"),
  ``base_model_name_or_path``, ``base_model_sha256`` (of the base .safetensors file), ``tensors``
  (key -> shape), ``gpt_config`` and a free-form ``extra`` dict.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
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

__all__ = [
    "AdapterError",
    "LoRAConfig",
    "LoRALinear",
    "apply_lora",
    "lora_layers",
    "merge_lora",
    "unmerge_lora",
    "disable_lora",
    "lora_disabled",
    "count_lora_parameters",
    "save_adapter",
    "load_adapter",
    "read_adapter",
    "file_sha256",
    "ADAPTER_WEIGHTS_NAME",
    "ADAPTER_CONFIG_NAME",
]

ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_FORMAT = "gpt-course-lora"
ADAPTER_FORMAT_VERSION = 1

# Names a classification head may have (``train_head=True`` looks for a module called one of these).
HEAD_NAMES = ("head", "classifier", "score")


class AdapterError(ValueError):
    """An adapter that does not fit the model: another base, a missing/mis-shaped tensor, a bad file."""


# ---------------------------------------------------------------------------------------------
# The layer


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``scale · B·A``.

    The wrapped layer's ``weight`` (out, in) and ``bias`` (out,) Parameters are registered on this
    module under the same names (not as ``base.weight``), so a plain model's state dict loads into a
    LoRA model with only the ``lora_A`` / ``lora_B`` keys missing. They are frozen here.

    States:

    * ``merged`` -- ``W`` already contains ``scale · B·A`` (see :meth:`merge`); the forward pass is a
      single ``F.linear``, the cost of the base layer. Merge for inference; unmerge to train again.
    * ``disabled`` -- the update is skipped: the layer computes exactly the base layer.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        _check_arguments(rank, alpha, dropout)
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.rank = int(rank)
        self.alpha = float(alpha)
        self.scale = self.alpha / self.rank
        self.dropout_p = float(dropout)

        # The frozen base: the very same Parameter objects as the wrapped layer, under the same names.
        self.weight = base.weight  # (out, in)
        self.bias = base.bias  # (out,) or None
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)

        # The trainable update, created on the base weight's device and in its dtype.
        factory = dict(device=self.weight.device, dtype=self.weight.dtype)
        self.lora_A = nn.Linear(self.in_features, self.rank, bias=False, **factory)  # weight (r, in)
        self.lora_B = nn.Linear(self.rank, self.out_features, bias=False, **factory)  # weight (out, r)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_lora_parameters()

        self.merged = False
        self.disabled = False
        self.train(base.training)  # a layer wrapped inside an eval() model stays in eval mode (no dropout)

    def reset_lora_parameters(self) -> None:
        """A like ``nn.Linear``'s default (Kaiming-uniform, a=√5); B = 0, so ΔW = 0 at the start."""
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def delta_weight(self) -> torch.Tensor:
        """The update in ``nn.Linear``'s layout: ΔW = scale · B·A, shape (out, in)."""
        return self.scale * (self.lora_B.weight @ self.lora_A.weight)  # (out, r) @ (r, in) -> (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)  # (..., in) -> (..., out): the frozen base layer
        if self.merged:
            if self.disabled:
                raise RuntimeError("a merged LoRA layer cannot be disabled; call unmerge_lora(model) first")
            return y  # ΔW is already inside W: no extra matmuls
        if self.disabled:
            return y
        h = self.lora_A(self.lora_dropout(x))  # (..., in) -> (..., r)
        return y + self.scale * self.lora_B(h)  # (..., r) -> (..., out)

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + ΔW. Merging a merged layer does nothing."""
        if self.merged:
            return
        self.weight.add_(self.delta_weight().to(self.weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W - ΔW: restores the base weight up to floating-point rounding. No-op if not merged."""
        if not self.merged:
            return
        self.weight.sub_(self.delta_weight().to(self.weight.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"rank={self.rank}, alpha={self.alpha:g}, scale={self.scale:g}, dropout={self.dropout_p:g}, "
            f"merged={self.merged}, disabled={self.disabled}"
        )


def _check_arguments(rank, alpha, dropout=0.0) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise ValueError(f"LoRA rank must be a positive integer, got {rank!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0 or not math.isfinite(alpha):
        raise ValueError(f"LoRA alpha must be a positive number, got {alpha!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout!r}")


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
    parts = name.split(".")
    return "blocks" in parts[:-1]


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
    chosen, used = [], set()
    for name, module in modules.items():
        if name == "" or (kinds is not None and not isinstance(module, kinds)):
            continue
        hit = False
        for i, target in enumerate(targets):
            for anc in _ancestors(name):
                if isinstance(target, str):
                    ok = anc != "" and _name_matches(anc, target)
                else:
                    ok = isinstance(modules[anc], target)
                if ok:
                    hit = True
                    used.add(i)
                    break
        if hit:
            chosen.append(name)
    for i, target in enumerate(targets):
        if i not in used:
            label = target if isinstance(target, str) else target.__name__
            raise ValueError(f"{what} {label!r} matches no module of this model")
    return chosen


def _as_target_list(targets) -> list:
    if isinstance(targets, (str, type)):
        targets = [targets]
    targets = list(targets)
    for t in targets:
        if not (isinstance(t, str) or (isinstance(t, type) and issubclass(t, nn.Module))):
            raise TypeError(f"a target is a module-name pattern (str) or an nn.Module subclass, got {t!r}")
    return targets


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def apply_lora(
    model: nn.Module,
    rank: int,
    alpha: float,
    targets: str | type | Iterable | None = None,
    dropout: float = 0.0,
    train_head: bool = False,
    trainable_modules: str | type | Iterable = (),
) -> nn.Module:
    """Wrap linear layers of ``model`` in :class:`LoRALinear`, **in place**, and freeze everything else.

    Args:
        rank, alpha: the update's rank r and the scale numerator (scale = alpha / r); both must be > 0.
        targets: which ``nn.Linear`` layers to wrap. ``None`` (default): every ``nn.Linear`` inside
            ``model.blocks`` -- heads such as ``lm_head`` or a classifier ``head`` are left out.
            Otherwise one or more module-name patterns (fnmatch on the qualified name, also matching
            as a dotted suffix: ``"q_proj"``, ``"*.attn.q_proj"``, ``"blocks.1.*"``, ``"head"``) or
            ``nn.Module`` types (``nn.Linear``, ``CausalSelfAttention``); these search the whole model,
            and a layer is wrapped when it or a module containing it matches.
        dropout: dropout on the LoRA branch's input (training only).
        train_head: keep the classification head (a module named ``head``, ``classifier`` or
            ``score``) fully trainable. An error if the model has none.
        trainable_modules: more modules (patterns or types, as for ``targets``) to keep fully trainable.

    After the call only the LoRA factors and the modules asked for are trainable. The model gets a
    ``lora_config`` attribute (:class:`LoRAConfig`) recording what was done. Returns ``model`` itself.

    Raises ValueError for rank/alpha <= 0, dropout outside [0, 1), a model that already has LoRA layers, a target or trainable
    module that matches nothing, a wrapped layer whose weight is tied to another parameter (merging
    would silently change that one too), or a module that is both LoRA-wrapped and fully trainable.
    """
    _check_arguments(rank, alpha, dropout)  # before anything changes
    if list(lora_layers(model)):
        raise ValueError("this model already has LoRA layers; apply_lora works on a model without adapters")

    if targets is None:
        names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and _in_blocks(n)]
        if not names:
            raise ValueError("the model has no nn.Linear inside a 'blocks' container; pass targets=...")
    else:
        names = _select(model, _as_target_list(targets), "LoRA target", kinds=(nn.Linear,))
    return _apply(model, names, rank, alpha, dropout, _trainable_names(model, names, train_head, trainable_modules))


def _trainable_names(model: nn.Module, lora_names: list[str], train_head: bool, trainable_modules) -> list[str]:
    """Qualified names of the modules to keep fully trainable (outermost only, no duplicates)."""
    wanted = _select(model, _as_target_list(trainable_modules), "trainable module", kinds=None) if trainable_modules else []
    if train_head:
        heads = [n for n, _ in model.named_modules() if n.split(".")[-1] in HEAD_NAMES and not _in_blocks(n)]
        if not heads:
            raise ValueError(f"train_head=True but the model has no module named one of {HEAD_NAMES}")
        wanted += heads
    # Keep only the outermost of nested names ("head" rather than "head" and "head.0").
    wanted = [n for n in dict.fromkeys(wanted) if not any(n != o and n.startswith(o + ".") for o in wanted)]
    for n in wanted:
        if n in lora_names or any(n.startswith(t + ".") or t.startswith(n + ".") for t in lora_names):
            raise ValueError(f"module {n!r} is both LoRA-wrapped and asked to be fully trainable; choose one")
    return wanted


def _apply(model: nn.Module, names: list[str], rank, alpha, dropout, trainable: list[str]) -> nn.Module:
    """Wrap exactly the Linear layers ``names``, freeze the rest, unfreeze ``trainable`` modules."""
    # A weight shared with another module (GPT's lm_head is tok_emb's matrix) must not be wrapped:
    # merging ΔW into it would change the embedding too.
    owners: dict[int, list[str]] = {}
    for pname, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), []).append(pname)
    for name in names:
        shared = owners[id(model.get_submodule(name).weight)]
        if len(shared) > 1:
            raise ValueError(
                f"{name}.weight is tied to {[s for s in shared if s != name + '.weight']} (shared weights); "
                "LoRA on it would also change the tied tensor. Untie it (tie_weights=False) or leave it out."
            )

    model.requires_grad_(False)  # freeze everything, then wrap (LoRA factors start trainable)
    for name in names:
        _set_submodule(model, name, LoRALinear(model.get_submodule(name), rank, alpha, dropout))
    for name in trainable:
        model.get_submodule(name).requires_grad_(True)
    model.lora_config = LoRAConfig(
        r=int(rank), lora_alpha=float(alpha), lora_dropout=float(dropout), target_modules=list(names), modules_to_save=list(trainable)
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
    """Fold every adapter into its weight (W <- W + scale·B·A); already merged layers are skipped.

    A merged layer's forward is one ``F.linear``, the base model's cost. Returns ``model``.
    """
    for _, layer in lora_layers(model):
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Undo :func:`merge_lora` (W <- W - scale·B·A, exact up to fp rounding); unmerged layers are skipped."""
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


def _layer_type(module_name: str) -> str:
    """``"blocks.3.attn.q_proj"`` -> ``"attn.q_proj"`` (block index dropped); other names unchanged."""
    return _BLOCK_PREFIX.sub("", module_name)


def count_lora_parameters(model: nn.Module) -> dict:
    """Parameter counts of a (LoRA) model; a tied weight counts once.

    Returns ``{"trainable": n, "total": n, "trainable_fraction": f, "lora": n, "by_layer_type": {...}}``
    where ``by_layer_type`` maps a layer type (block index dropped) to its trainable parameters, e.g.
    ``{"attn.q_proj": 2 * r * (C + C), ..., "head": C * 2 + 2}``. For a LoRA layer that is r·(in + out).
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
        key = _layer_type(module_name) or pname
        by_type[key] = by_type.get(key, 0) + p.numel()
    return {
        "trainable": trainable,
        "total": total,
        "trainable_fraction": trainable / total if total else 0.0,
        "lora": lora,
        "by_layer_type": by_type,
    }


# ---------------------------------------------------------------------------------------------
# Saving and loading adapters


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (the data layer's :func:`gpt.data.sha256_file`)."""
    from .data import sha256_file

    return sha256_file(Path(path))


def _base_sha256(base_checkpoint) -> str | None:
    """sha256 of a base checkpoint given as a file path, or a 64-hex-digit digest passed through."""
    if base_checkpoint is None:
        return None
    p = Path(base_checkpoint)
    if p.is_file():
        return file_sha256(p)
    if isinstance(base_checkpoint, str) and re.fullmatch(r"[0-9a-fA-F]{64}", base_checkpoint):
        return base_checkpoint.lower()
    raise AdapterError(f"base checkpoint {str(base_checkpoint)!r} is neither a file nor a sha256 digest")


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
    model: nn.Module,
    path: str | os.PathLike,
    base_checkpoint: str | os.PathLike | None = None,
    extra: dict | None = None,
) -> Path:
    """Write the adapter into the folder ``path``: ``adapter_model.safetensors`` + ``adapter_config.json``.

    ``base_checkpoint``: the base model's .safetensors file (its sha256 is recorded, so loading onto
    another base fails) or that sha256 as a hex string. ``extra``: any JSON-serialisable metadata
    (label names, tokenizer, metrics). Saving a merged model is fine: the factors are kept apart.
    Returns the folder.
    """
    layers = list(lora_layers(model))
    if not layers:
        raise AdapterError("the model has no LoRA layers: nothing to save (call apply_lora first)")
    settings = {(layer.rank, layer.alpha, layer.dropout_p) for _, layer in layers}
    if len(settings) > 1:
        raise AdapterError(f"layers use different (rank, alpha, dropout) {sorted(settings)}; one adapter file holds one setting")
    r, lora_alpha, lora_dropout = settings.pop()
    sha = _base_sha256(base_checkpoint)
    tensors = {k: v.detach().contiguous().cpu() for k, v in _adapter_tensors(model).items()}
    cfg = getattr(model, "lora_config", None)
    model_config = getattr(model, "config", None)
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
        "gpt_config": model_config.to_dict() if hasattr(model_config, "to_dict") else None,
        "tensors": {k: list(v.shape) for k, v in tensors.items()},
        "extra": extra or {},
    }
    text = json.dumps(config, indent=2)  # fails early (TypeError) if ``extra`` is not JSON-serialisable

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (ADAPTER_WEIGHTS_NAME + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": ADAPTER_FORMAT})
    os.replace(tmp, folder / ADAPTER_WEIGHTS_NAME)
    tmp = folder / (ADAPTER_CONFIG_NAME + ".tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, folder / ADAPTER_CONFIG_NAME)
    return folder


def read_adapter(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, tensors) of an adapter folder written by :func:`save_adapter` (or its .safetensors file)."""
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    cfg_file, weights_file = folder / ADAPTER_CONFIG_NAME, folder / ADAPTER_WEIGHTS_NAME
    for f in (cfg_file, weights_file):
        if not f.is_file():
            raise AdapterError(f"{f} does not exist: not an adapter folder")
    try:
        config = json.loads(cfg_file.read_text())
        tensors = load_file(str(weights_file))
    except Exception as e:  # bad JSON or a damaged safetensors file
        raise AdapterError(f"{folder} holds an unreadable adapter ({e})") from e
    if config.get("format") != ADAPTER_FORMAT:
        raise AdapterError(f"{cfg_file} is not a {ADAPTER_FORMAT} adapter config (format={config.get('format')!r})")
    return config, tensors


def load_adapter(model: nn.Module, path: str | os.PathLike, base_checkpoint: str | os.PathLike | None = None) -> nn.Module:
    """Load an adapter saved by :func:`save_adapter` into ``model`` (in place) and return it.

    If the model has no LoRA layers yet, LoRA is applied first with the saved rank, alpha, dropout,
    layers and trainable modules. Everything is checked before any weight changes; an
    :class:`AdapterError` names the problem: a ``base_checkpoint`` whose sha256 differs from the one
    recorded at save time (the adapter was trained on another base), a layer the model lacks, a
    missing, unexpected or mis-shaped tensor (by key), or a merged model (unmerge first).
    """
    config, tensors = read_adapter(path)
    saved_sha, sha = config.get("base_model_sha256"), _base_sha256(base_checkpoint)
    if sha is not None and saved_sha is not None and sha != saved_sha:
        raise AdapterError(
            f"adapter {path} was trained on a base checkpoint with sha256 {saved_sha[:12]}..., but "
            f"{base_checkpoint} has sha256 {sha[:12]}...: a different base model"
        )
    if sha is not None and saved_sha is None:
        warnings.warn(f"adapter {path} records no base checkpoint sha256; cannot check the base model", stacklevel=2)

    r, alpha, dropout = config["r"], config["lora_alpha"], config["lora_dropout"]
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
            if (layer.rank, layer.alpha) != (r, float(alpha)):
                raise AdapterError(f"LoRA layer {name} has rank {layer.rank}, alpha {layer.alpha:g}; the adapter has {r}, {alpha:g}")
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
    for name in targets:
        for key in (f"{name}.lora_A.weight", f"{name}.lora_B.weight"):
            if key not in tensors:
                raise AdapterError(f"adapter file lacks tensor {key!r}")

    if not existing:
        _apply(model, targets, r, alpha, dropout, to_save)
    params = dict(model.named_parameters(remove_duplicate=False))
    with torch.no_grad():
        for key, t in tensors.items():
            params[key].copy_(t.to(dtype=params[key].dtype, device=params[key].device))
    return model
