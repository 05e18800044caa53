"""Adapters: what a trained LoRA adapter holds, saved small, and loaded onto a base model.

:func:`save_adapter` gathers an adapter from a model -- the LoRA factors (``<layer>.lora_A.weight``,
``<layer>.lora_B.weight``), DoRA's magnitude vectors (``<layer>.lora_magnitude_vector``), and every
deliberately trainable non-LoRA tensor (e.g. a classification head ``head.weight``) -- with the LoRA
settings under PEFT's names, and writes it as a folder of two files in the course's format or in
Hugging Face PEFT's (the files themselves are :mod:`gpt.io.adapter_files`). :func:`load_adapter` puts an
adapter saved either way (or by PEFT's ``save_pretrained``) onto a model: it wraps the layers the
adapter names with :class:`~gpt.lora.layer.LoRALinear` if the model has none yet, and copies the tensors in.

A PiSSA model's frozen W is the residual, not the base file's W, so its adapter is written as the
equivalent plain LoRA update of rank 2r for the untouched base (:func:`gpt.lora.variants.pissa_to_lora`,
as PEFT's conversion): it loads onto the base checkpoint like any adapter.

Loading checks everything before a weight changes: an adapter that is damaged, incomplete, holds
NaN/inf, or belongs to another model raises :class:`~gpt.errors.AdapterError`; an existing adapter
folder is replaced only with ``overwrite=True`` (else :class:`~gpt.errors.OutputExistsError`).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from ..checks import check_bool
from ..errors import AdapterError, ConfigError
from ..lora.layer import LoRALinear, check_lora_settings, init_weights_name, lora_layers, lora_parameters, wrap_layers
from ..lora.variants import pissa_to_lora
from .adapter_files import (ADAPTER_CONFIG_NAME, ADAPTER_FORMAT, ADAPTER_FORMAT_VERSION, ADAPTER_FORMATS, ADAPTER_WEIGHTS_NAME, PEFT_PREFIX,
                            base_sha256, check_adapter_folder, read_adapter_files, write_adapter)


__all__ = ["save_adapter", "load_adapter", "read_adapter", "base_weights_sha256", "AdapterError", "ADAPTER_WEIGHTS_NAME", "ADAPTER_CONFIG_NAME",
           "ADAPTER_FORMATS", "PEFT_PREFIX"]

# GPTConfig fields that do not change what the weights mean; an adapter may be loaded across them.
RUNTIME_FIELDS = ("dropout", "attn_impl")


def _model_config(model: nn.Module) -> dict | None:
    """The GPTConfig (as a dict) of ``model`` or of the first submodule that has one (a classifier's ``gpt``)."""
    for m in model.modules():
        cfg = getattr(m, "config", None)
        if hasattr(cfg, "to_dict"):
            return cfg.to_dict()
    return None


def base_weights_sha256(model: nn.Module, target_modules, adapter_keys) -> str:
    """sha256 of the base weights an adapter leaves alone: every parameter of ``model`` except the wrapped
    layers' weight matrices (``<target>.weight``: merged or PiSSA layers change them), LoRA's own tensors and
    the adapter's tensors ``adapter_keys`` (a trained head). Floating-point weights are hashed rounded to
    bfloat16, so a float32 base and its bfloat16 copy agree; two different bases (another seed, more
    training) differ in their embeddings already. What :func:`load_adapter` compares, with or without a
    ``base_checkpoint``."""
    skip = set(adapter_keys) | {f"{t}.weight" for t in target_modules}
    h = hashlib.sha256()
    for key, p in sorted(model.named_parameters(remove_duplicate=False), key=lambda kv: kv[0]):
        if key in skip or ".lora_" in key:
            continue
        t = p.detach()
        t = (t.to(torch.bfloat16) if t.is_floating_point() else t).cpu().contiguous()
        h.update(f"{key}|{list(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _adapter_contents(model: nn.Module) -> tuple[dict, dict[str, torch.Tensor], list[str]]:
    """``(settings, tensors, by_hand)`` of an adapter: the LoRA settings as saved (a PiSSA adapter
    converted to plain LoRA of rank 2r), the tensors (LoRA factors, DoRA magnitudes, the trainable
    non-LoRA parameters), and the keys of those the user unfroze by hand (not in ``modules_to_save``)."""

    layers = list(lora_layers(model))
    if not layers:
        raise AdapterError("the model has no LoRA layers: nothing to save (call apply_lora first)")
    found = {(lay.r, lay.lora_alpha, lay.lora_dropout_p, lay.use_rslora, lay.use_dora, lay.init_lora_weights) for _, lay in layers}
    if len(found) > 1:
        raise AdapterError(f"layers use different (r, lora_alpha, lora_dropout, use_rslora, use_dora, init_lora_weights) {sorted(found)}; "
                           "one adapter file holds one setting")
    r, lora_alpha, lora_dropout, use_rslora, use_dora, init = found.pop()
    settings = dict(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_rslora=use_rslora, use_dora=use_dora,
                    init_lora_weights=init, converted_from=None)
    lora_ids = {id(p) for _, layer in layers for p in lora_parameters(layer)}
    keep: dict[str, torch.Tensor] = {}
    for name, layer in layers:
        A, B = layer.lora_A.weight, layer.lora_B.weight  # (r, in), (out, r)
        if init == "pissa":  # for the untouched W: rank 2r, same scale
            A, B, settings["r"], settings["lora_alpha"] = pissa_to_lora(A, B, layer.lora_A_init, layer.lora_B_init, r, lora_alpha, use_rslora)
        keep[f"{name}.lora_A.weight"], keep[f"{name}.lora_B.weight"] = A, B
        if use_dora:
            keep[f"{name}.lora_magnitude_vector"] = layer.lora_magnitude_vector  # (out,)
    if init == "pissa":
        settings.update(init_lora_weights="kaiming", converted_from="pissa")
    cfg = getattr(model, "lora_config", None)
    for mod in cfg.modules_to_save if cfg else []:
        for pname, p in model.get_submodule(mod).named_parameters():
            keep.setdefault(f"{mod}.{pname}", p)
    by_hand = []
    for pname, p in model.named_parameters():  # anything else the user unfroze by hand
        if p.requires_grad and id(p) not in lora_ids and all(p is not q for q in keep.values()):
            keep[pname] = p
            by_hand.append(pname)
    return settings, keep, by_hand


def save_adapter(
    model: nn.Module, path: str | os.PathLike, base_checkpoint: str | os.PathLike | None = None,
    extra: dict | None = None, *, overwrite: bool = False, format: str = "course",
) -> Path:  # fmt: skip
    """Write the adapter into the folder ``path`` (``adapter_model.safetensors`` + ``adapter_config.json``).

    ``format="course"`` (default): the course's format (module docstring). ``format="peft"``: Hugging
    Face PEFT's, so that ``PeftModel.from_pretrained(model, path)`` loads it onto the same base model:
    tensor keys ``base_model.model.<module>.lora_A.weight`` / ``.lora_B.weight`` (``.lora_magnitude_vector``
    for DoRA, ``base_model.model.<module>.<param>`` for ``modules_to_save``), and an ``adapter_config.json``
    with ``peft_type: "LORA"``, ``r``, ``lora_alpha``, ``lora_dropout``, ``target_modules``, ``use_rslora``,
    ``use_dora``, ``init_lora_weights``, ``modules_to_save``; the base sha256, GPTConfig and ``extra`` go
    into the safetensors header (PEFT ignores them, :func:`load_adapter` checks them). Parameters
    unfrozen by hand outside ``modules_to_save`` are refused in this format (PEFT would drop them).
    PEFT matches ``modules_to_save`` by name suffix (``"head"`` also matches a GPT's ``lm_head``) and
    needs a tensor for every module that matches, so the folder also holds those modules' unchanged
    weights: for the course classifier that is ``gpt.lm_head.weight``, the tied token embedding (3 MB).

    ``base_checkpoint``: the base model's .safetensors file (its sha256 is recorded, so loading onto
    another base fails) or that sha256. Without it too, the sha256 of the base weights the adapter leaves
    alone (:func:`base_weights_sha256`) is recorded, which :func:`load_adapter` checks; and the files carry a
    checksum of their content (:func:`gpt.io.adapter_files.adapter_checksum`), verified when read. ``extra``: a dict of JSON-serialisable metadata (labels,
    metrics); anything else is a ConfigError. Saving a merged model is fine. Returns the folder.

    Nothing is lost: an existing non-empty ``path`` raises OutputExistsError unless ``overwrite=True``
    (a folder holding more than an adapter's two files is refused even then); the output is checked
    before anything is serialised, and both files appear in one rename (:func:`gpt.io.files.atomic_dir`),
    so a crash leaves the previous adapter intact. Tensors holding NaN or inf (training diverged) are
    refused with AdapterError -- such an adapter is useless -- and nothing is written.
    """
    if format not in ADAPTER_FORMATS:
        raise ConfigError(f"format must be one of {list(ADAPTER_FORMATS)}, got {format!r}")
    layers = list(lora_layers(model))
    settings, tensors, by_hand = _adapter_contents(model)
    if format == "peft" and by_hand:
        raise AdapterError(f"parameters {by_hand[:3]} train but are not in modules_to_save, and PEFT's format cannot hold them; "
                           "apply_lora(..., modules_to_save=[...]) them, or save with format='course'")
    if extra is not None and not isinstance(extra, dict):
        raise ConfigError(f"extra must be a dict of JSON-serialisable metadata, got {type(extra).__name__}")
    try:
        json.dumps(extra or {}, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"extra is not JSON-serialisable ({e}); pass plain str, numbers, lists and dicts, e.g. str(path), float(x)") from e
    folder = check_adapter_folder(path, overwrite)  # before any work
    sha = base_sha256(base_checkpoint)

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    for key, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise AdapterError(f"adapter tensor {key!r} holds NaN or inf (training diverged); nothing was saved. Train again, e.g. with a lower learning rate")
    cfg = getattr(model, "lora_config", None)
    base_name = Path(base_checkpoint).name if sha and Path(base_checkpoint).is_file() else None
    config = {
        "format": ADAPTER_FORMAT,
        "format_version": ADAPTER_FORMAT_VERSION,
        **settings,
        "target_modules": [name for name, _ in layers],
        "modules_to_save": list(cfg.modules_to_save) if cfg else [],
        "bias": "none",
        "base_model_name_or_path": base_name,
        "base_model_sha256": sha,
        "base_weights_sha256": None,  # below, once the tensors are known
        "gpt_config": _model_config(model),
        "tensors": {k: list(v.shape) for k, v in tensors.items()},
        "extra": extra or {},
    }
    peft_extra = _peft_suffix_matches(model, config["modules_to_save"], tensors) if format == "peft" else None
    config["base_weights_sha256"] = base_weights_sha256(model, config["target_modules"], [*tensors, *(peft_extra or {})])
    return write_adapter(folder, config, tensors, format=format, overwrite=overwrite, peft_extra=peft_extra)


def _peft_suffix_matches(model: nn.Module, modules_to_save: list[str], have: dict) -> dict[str, torch.Tensor]:
    """The tensors of the further modules PEFT's suffix matching of ``modules_to_save`` wraps (their
    current, untrained values), which ``PeftModel.from_pretrained`` expects to find in the file."""

    lora_names = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    extra = {}
    for qn, module in model.named_modules(remove_duplicate=False):
        if qn in modules_to_save or not any(qn.endswith(m) for m in modules_to_save):
            continue
        if any(qn == n or qn.startswith(n + ".") for n in lora_names):
            continue
        for pname, p in module.named_parameters(remove_duplicate=False):
            extra.setdefault(f"{qn}.{pname}", p.detach().contiguous().cpu())
    return {k: v for k, v in extra.items() if k not in have}


def _check_saved_settings(config: dict) -> None:
    """The LoRA settings of a saved adapter config (:func:`gpt.lora.layer.check_lora_settings`); a saved adapter is never PiSSA."""
    check_lora_settings(config["r"], config["lora_alpha"], config.get("lora_dropout", 0.0), config.get("use_rslora", False),
                        config.get("use_dora", False), config.get("init_lora_weights", "kaiming"))
    if init_weights_name(config.get("init_lora_weights", "kaiming")) == "pissa":
        raise ConfigError("init_lora_weights is 'pissa', but a saved adapter holds the converted plain LoRA update")


def read_adapter(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, tensors) of an adapter folder written by :func:`save_adapter` (or one of its two files),
    or by PEFT's ``save_pretrained``: a PEFT-format folder comes back in the course's terms (the config's
    keys as the course format writes them, ``"source_format": "peft"``; keys without ``base_model.model.``).

    Both are checked (:func:`gpt.io.adapter_files.read_adapter_files`): :class:`AdapterError`, naming the file,
    for a missing folder or file, invalid JSON, a damaged safetensors file, a missing or bad config key
    (LoRA settings included), tensors that disagree with the config's ``tensors`` list, or a tensor that
    is not floating point or holds NaN/inf.
    """
    return read_adapter_files(path, check_settings=_check_saved_settings)


def _check_architecture(model: nn.Module, config: dict, path) -> None:
    """The adapter in ``path`` (its ``config``) was trained on a model with this GPTConfig (``RUNTIME_FIELDS``
    excepted); else AdapterError."""
    saved_cfg, model_cfg = config.get("gpt_config"), _model_config(model)
    if saved_cfg and model_cfg:
        diff = [k for k in saved_cfg if k in model_cfg and k not in RUNTIME_FIELDS and saved_cfg[k] != model_cfg[k]]
        if diff:
            shown = ", ".join(f"{k}={saved_cfg[k]!r} (the model has {model_cfg[k]!r})" for k in diff)
            raise AdapterError(f"adapter {path} was trained on a model with {shown}: another architecture; load it into the model it was trained on")


def _check_same_base(model: nn.Module, config: dict, adapter_keys, path, base_checkpoint, allow_other_base: bool) -> None:
    """The adapter in ``path`` (its ``config``, the keys of its tensors) was trained on this base: the same base
    checkpoint sha256 (when both are known) and the same :func:`base_weights_sha256` (when recorded).
    Another base is an AdapterError, or with ``allow_other_base`` a warning naming both sha256s; an
    adapter that records neither loads with a warning."""
    saved_file, file_sha = config.get("base_model_sha256"), base_sha256(base_checkpoint)
    saved_weights = config.get("base_weights_sha256")
    others = []  # (what, the adapter's base sha256, this base's sha256)
    if file_sha is not None and saved_file is not None and file_sha != saved_file.lower():
        others.append((f"a base checkpoint, but {base_checkpoint} has another", saved_file.lower(), file_sha))
    if saved_weights is not None:
        weights = base_weights_sha256(model, config["target_modules"], adapter_keys)
        if weights != saved_weights.lower():
            others.append(("base weights (those it leaves alone), but this model's differ", saved_weights.lower(), weights))
    elif file_sha is None or saved_file is None:
        warnings.warn(f"adapter {path} records no sha256 of its base weights (saved by an older version of gpt, or by PEFT): "
                      "this model cannot be verified to be the base it was trained on; save the adapter again with "
                      "gpt.io.adapters.save_adapter to record it", stacklevel=3)
    for what, theirs, ours in others:
        message = (f"adapter {path} was trained on {what}: sha256 {theirs} at save time, {ours} here: a different base model, "
                   "whose outputs with this adapter are not the trained model's")
        if not allow_other_base:
            raise AdapterError(f"{message}; load the base it was trained on, or pass allow_other_base=True to load it anyway")
        warnings.warn(f"{message}; loading it anyway (allow_other_base=True)", stacklevel=3)


def _without_tied_copies(model: nn.Module, tensors: dict, to_save: list[str]) -> tuple[dict, list[str]]:
    """``(tensors, to_save)`` without the tensors of tied parameters (PEFT's copy of a GPT's ``lm_head``),
    which must equal the model's (else AdapterError), and without the modules to save that held them."""
    tensors = dict(tensors)
    owners: dict[int, int] = {}
    named_all = dict(model.named_parameters(remove_duplicate=False))
    for p in named_all.values():
        owners[id(p)] = owners.get(id(p), 0) + 1
    for key in [k for k in tensors if k in named_all and owners[id(named_all[k])] > 1]:  # a tied parameter
        if not torch.equal(tensors[key].to(named_all[key].dtype), named_all[key].detach().cpu()):
            raise AdapterError(f"adapter tensor {key!r} is a trained copy of a weight this model ties to another; it cannot be loaded here")
        del tensors[key]
        to_save = [m for m in to_save if not key.startswith(m + ".")]
    return tensors, to_save


def load_adapter(model: nn.Module, path: str | os.PathLike, base_checkpoint: str | os.PathLike | None = None, *,
                 allow_other_base: bool = False) -> nn.Module:
    """Load an adapter saved by :func:`save_adapter` (either format) or by PEFT into ``model`` (in place) and return it.

    A model without LoRA layers gets them first (the saved ``r``, ``lora_alpha``, ``lora_dropout``,
    ``use_rslora``, ``use_dora``, ``init_lora_weights``, ``target_modules``, ``modules_to_save``). A tensor
    of a tied parameter (PEFT's copy of a GPT's ``lm_head`` when ``modules_to_save`` held ``"head"``) is
    skipped when it equals the model's, and refused when it differs. Everything is checked before any weight changes; an
    AdapterError names the problem: anything :func:`read_adapter` refuses, a ``base_checkpoint`` with
    another sha256 than at save time, a GPTConfig that differs from the saved ``gpt_config``
    (``RUNTIME_FIELDS`` excepted), a layer the model lacks, a missing, unexpected or mis-shaped tensor,
    LoRA layers with another ``r`` / ``lora_alpha``, or a merged model (unmerge first).

    Another base: the adapter records the sha256 of the base weights it leaves alone
    (:func:`base_weights_sha256`), compared with ``model``'s whether or not ``base_checkpoint`` is given
    (and ``base_checkpoint``'s file sha256 with the recorded one). A mismatch is an AdapterError, unless
    ``allow_other_base=True``, which loads it with a warning naming both sha256s. An adapter that records no
    base sha256 (saved before they were recorded, or by PEFT) loads with a warning that its base cannot be verified.
    """
    check_bool("allow_other_base", allow_other_base)
    config, tensors = read_adapter(path)
    _check_architecture(model, config, path)
    adapter_keys = list(tensors)  # all of them: the base weights' sha256 leaves them out (tied copies are dropped below)
    r, lora_alpha, lora_dropout = config["r"], config["lora_alpha"], config.get("lora_dropout", 0.0)
    variant = dict(use_rslora=config.get("use_rslora", False), use_dora=config.get("use_dora", False),
                   init_lora_weights=init_weights_name(config.get("init_lora_weights", "kaiming")))
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
            for key in ("use_rslora", "use_dora"):
                if getattr(layer, key) != variant[key]:
                    raise AdapterError(f"LoRA layer {name} has {key}={getattr(layer, key)}, the adapter {key}={variant[key]}; apply_lora with the adapter's setting")
            if layer.init_lora_weights == "pissa":
                raise AdapterError(f"LoRA layer {name} is a PiSSA layer (its W is a residual); load adapters onto the base model without LoRA layers")
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
            if variant["use_dora"]:
                expected[f"{name}.lora_magnitude_vector"] = (m.out_features,)

    # Check every tensor before touching the model.
    for key, t in tensors.items():
        if key not in expected:
            raise AdapterError(f"adapter tensor {key!r} has no counterpart in this model")
        if tuple(t.shape) != expected[key]:
            raise AdapterError(f"adapter tensor {key!r} has shape {tuple(t.shape)}, the model expects {expected[key]}")
    needed = [f"{name}.lora_{ab}.weight" for name in targets for ab in "AB"]
    needed += [f"{name}.lora_magnitude_vector" for name in targets] if variant["use_dora"] else []
    needed += [f"{mod}.{pname}" for mod in to_save if mod in modules for pname, _ in modules[mod].named_parameters()]
    for key in needed:
        if key not in tensors:
            raise AdapterError(f"adapter file lacks tensor {key!r}; the adapter is incomplete: save it again")
    tensors, to_save = _without_tied_copies(model, tensors, to_save)

    _check_same_base(model, config, adapter_keys, path, base_checkpoint, allow_other_base)  # the last check: the model is right otherwise
    if not existing:
        wrap_layers(model, targets, r, lora_alpha, lora_dropout, to_save, **variant)
    params = dict(model.named_parameters(remove_duplicate=False))
    with torch.no_grad():
        for key, t in tensors.items():
            params[key].copy_(t.to(dtype=params[key].dtype, device=params[key].device))
    return model
