"""Adapter files: a trained LoRA adapter saved small, and loaded onto a base model.

Two formats, both a folder of two files written in one step (both appear together or not at all):
the course's (``format="course"``, the default, below) and Hugging Face PEFT's (``format="peft"``:
what ``PeftModel.from_pretrained(model, path)`` reads, see :func:`save_adapter`). :func:`load_adapter`
reads both, also folders that PEFT's ``save_pretrained`` wrote.

The course's format:

* ``adapter_model.safetensors`` -- the LoRA factors (``<layer>.lora_A.weight``, ``<layer>.lora_B.weight``)
  plus every deliberately trainable non-LoRA tensor (e.g. a classification head ``head.weight``);
  keys are the model's own state-dict keys (PEFT prefixes them with ``base_model.model.``; we don't).
* ``adapter_config.json`` -- ``r``, ``lora_alpha``, ``lora_dropout``, ``target_modules`` (the exact
  qualified names of the wrapped layers), ``modules_to_save``, ``use_rslora``, ``use_dora``,
  ``init_lora_weights``, ``converted_from`` (``"pissa"`` or null), ``bias`` ("none"),
  ``base_model_name_or_path``, ``base_model_sha256`` (of the base .safetensors file), ``tensors``
  (key -> shape), ``gpt_config`` and a free-form ``extra`` dict.

DoRA's magnitude vectors are part of the adapter (``<layer>.lora_magnitude_vector``). A PiSSA model's
frozen W is the residual, not the base file's W, so its adapter is written as the equivalent plain
LoRA update of rank 2r for the untouched base (:func:`gpt.lora.variants.pissa_to_lora`, as PEFT's
conversion): it loads onto the base checkpoint like any adapter.

Loading checks everything before a weight changes: an adapter that is damaged, incomplete, holds
NaN/inf, or belongs to another model raises :class:`~gpt.errors.AdapterError`; an existing adapter
folder is replaced only with ``overwrite=True`` (else :class:`~gpt.errors.OutputExistsError`).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..errors import AdapterError, ConfigError, OutputExistsError
from ..io.files import atomic_dir, check_output, sha256_file
from .layer import LoRALinear, init_weights_name, lora_layers, lora_parameters, lora_settings_problem, wrap_layers
from .variants import pissa_to_lora


__all__ = ["save_adapter", "load_adapter", "read_adapter", "AdapterError", "ADAPTER_WEIGHTS_NAME", "ADAPTER_CONFIG_NAME",
           "ADAPTER_FORMATS", "PEFT_PREFIX"]

ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_FORMAT = "gpt-course-lora"
ADAPTER_FORMAT_VERSION = 1
# GPTConfig fields that do not change what the weights mean; an adapter may be loaded across them.
RUNTIME_FIELDS = ("dropout", "attn_impl")
ADAPTER_FORMATS = ("course", "peft")
PEFT_PREFIX = "base_model.model."  # PEFT's tensor keys: the model's own keys under this prefix
PEFT_METADATA_KEY = "gpt_course"  # our metadata in a PEFT-format file's safetensors header (PEFT ignores it)


def _base_sha256(base_checkpoint) -> str | None:
    """sha256 of a base checkpoint given as a file path, or a 64-hex-digit digest passed through."""
    if base_checkpoint is None:
        return None
    if Path(base_checkpoint).is_file():
        return sha256_file(base_checkpoint)
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
    another base fails) or that sha256. ``extra``: a dict of JSON-serialisable metadata (labels,
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
    folder = check_output(path, kind="dir", overwrite=overwrite, flag="overwrite=True")  # before any work
    if folder.is_dir():
        others = sorted(p.name for p in folder.iterdir() if p.name not in (ADAPTER_WEIGHTS_NAME, ADAPTER_CONFIG_NAME))
        if others:
            raise OutputExistsError(f"{folder} holds files that are not part of an adapter ({others[:3]}); save the adapter into its own folder")
    sha = _base_sha256(base_checkpoint)

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
        "gpt_config": _model_config(model),
        "tensors": {k: list(v.shape) for k, v in tensors.items()},
        "extra": extra or {},
    }
    metadata = {"format": ADAPTER_FORMAT}
    if format == "peft":
        metadata = {"format": "pt", PEFT_METADATA_KEY: json.dumps(config, allow_nan=False)}
        config = _peft_config(config)
        tensors.update(_peft_suffix_matches(model, config["modules_to_save"] or [], tensors))
        tensors = {PEFT_PREFIX + k: v for k, v in tensors.items()}
    text = json.dumps(config, indent=2, allow_nan=False)
    with atomic_dir(folder, overwrite=overwrite, flag="overwrite=True") as tmp:
        save_file(tensors, str(tmp / ADAPTER_WEIGHTS_NAME), metadata=metadata)
        (tmp / ADAPTER_CONFIG_NAME).write_text(text + "\n")
    return folder


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


def _peft_config(course: dict) -> dict:
    """PEFT's ``adapter_config.json`` (a ``LoraConfig``) for the course config ``course``."""
    return {
        "peft_type": "LORA",
        "task_type": None,
        "base_model_name_or_path": course["base_model_name_or_path"],
        "r": course["r"],
        "lora_alpha": course["lora_alpha"],
        "lora_dropout": course["lora_dropout"],
        "target_modules": course["target_modules"],
        "modules_to_save": course["modules_to_save"] or None,
        "use_rslora": course["use_rslora"],
        "use_dora": course["use_dora"],
        "init_lora_weights": True if course["init_lora_weights"] == "kaiming" else course["init_lora_weights"],
        "bias": "none",
        "lora_bias": False,
        "fan_in_fan_out": False,
        "inference_mode": True,
        "rank_pattern": {},
        "alpha_pattern": {},
        "layers_to_transform": None,
        "layers_pattern": None,
    }


def _check_adapter_config(config, source: Path) -> None:
    """AdapterError naming the key and ``source`` for anything :func:`load_adapter` could not use."""
    if not isinstance(config, dict):
        raise AdapterError(f"{source} holds a JSON {type(config).__name__}, not an adapter config object")
    if config.get("format") != ADAPTER_FORMAT:
        raise AdapterError(f"{source} is not a {ADAPTER_FORMAT} adapter config (format={config.get('format')!r}); give a folder written by save_adapter")
    for key in ("r", "lora_alpha", "target_modules"):
        if key not in config:
            raise AdapterError(f"{source} lacks the key {key!r}; the file is damaged or incomplete: save the adapter again")
    problem = lora_settings_problem(config["r"], config["lora_alpha"], config.get("lora_dropout", 0.0), config.get("use_rslora", False),
                            config.get("use_dora", False), config.get("init_lora_weights", "kaiming"))
    if not problem and init_weights_name(config.get("init_lora_weights", "kaiming")) == "pissa":
        problem = "init_lora_weights is 'pissa', but a saved adapter holds the converted plain LoRA update"
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
    """(config, tensors) of an adapter folder written by :func:`save_adapter` (or one of its two files),
    or by PEFT's ``save_pretrained``: a PEFT-format folder comes back in the course's terms (the config's
    keys as the course format writes them, ``"source_format": "peft"``; keys without ``base_model.model.``).

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
    try:
        tensors = load_file(str(weights_file))
    except Exception as e:  # safetensors raises several types for a truncated or garbage file
        raise AdapterError(f"{weights_file} is damaged or not a safetensors file ({e}); save the adapter again") from e
    if isinstance(config, dict) and "peft_type" in config:
        config, tensors = _from_peft(config, tensors, cfg_file, weights_file)
    _check_adapter_config(config, cfg_file)

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


_PEFT_MUTATING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")  # inits that change W: an unconverted adapter needs PEFT's altered base


def _from_peft(peft: dict, tensors: dict, cfg_file: Path, weights_file: Path) -> tuple[dict, dict]:
    """A PEFT LoRA adapter (its ``adapter_config.json`` and tensors) in the course's terms; AdapterError
    for what the course's layers cannot hold (another PEFT method, rank or alpha patterns, LoRA biases,
    fan_in_fan_out, an unconverted PiSSA-like adapter)."""
    if peft.get("peft_type") != "LORA":
        raise AdapterError(f"{cfg_file} is a PEFT {peft.get('peft_type')!r} adapter; only LoRA adapters (peft_type 'LORA') load here")
    for key, bad, why in (("rank_pattern", lambda v: bool(v), "a rank per layer"), ("alpha_pattern", lambda v: bool(v), "an alpha per layer"),
                          ("lora_bias", lambda v: bool(v), "LoRA biases"), ("fan_in_fan_out", lambda v: bool(v), "transposed (Conv1D) weights"),
                          ("bias", lambda v: v not in (None, "none"), "trained biases")):
        if bad(peft.get(key)):
            raise AdapterError(f"{cfg_file}: {key}={peft[key]!r} ({why}) is not supported by gpt.lora; save the adapter without it")
    init = peft.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(_PEFT_MUTATING_INITS):
        raise AdapterError(f"{cfg_file}: init_lora_weights={init!r} changed the base weights, so this adapter only fits PEFT's altered base; "
                           "save it with save_pretrained(..., path_initial_model_for_weight_conversion=...) to get a plain LoRA adapter")
    for key in ("r", "lora_alpha"):
        if key not in peft:
            raise AdapterError(f"{cfg_file} lacks the key {key!r}; the file is damaged or incomplete")
    meta = {}
    try:
        with safe_open(str(weights_file), framework="pt") as f:
            header = (f.metadata() or {}).get(PEFT_METADATA_KEY)
        meta = json.loads(header) if header else {}
    except (OSError, ValueError):
        meta = {}
    outside = sorted(k for k in tensors if not k.startswith(PEFT_PREFIX))
    if outside:
        raise AdapterError(f"{weights_file}: tensor {outside[0]!r} lacks PEFT's prefix {PEFT_PREFIX!r}; is this a PEFT adapter of another kind of model?")
    tensors = {k[len(PEFT_PREFIX):]: v for k, v in tensors.items()}
    targets = sorted(k[: -len(".lora_A.weight")] for k in tensors if k.endswith(".lora_A.weight"))
    lora_keys = {f"{t}.{part}" for t in targets for part in ("lora_A.weight", "lora_B.weight", "lora_magnitude_vector")}
    to_save = sorted({k.rpartition(".")[0] for k in tensors if k not in lora_keys})
    config = {
        "format": ADAPTER_FORMAT, "source_format": "peft",
        "r": peft["r"], "lora_alpha": peft["lora_alpha"], "lora_dropout": peft.get("lora_dropout", 0.0) or 0.0,
        "use_rslora": bool(peft.get("use_rslora", False)), "use_dora": bool(peft.get("use_dora", False)),
        "init_lora_weights": "gaussian" if init == "gaussian" else "kaiming",
        "target_modules": targets, "modules_to_save": to_save,
        "base_model_sha256": meta.get("base_model_sha256"), "gpt_config": meta.get("gpt_config"),
        "converted_from": meta.get("converted_from"), "extra": meta.get("extra") or {},
    }
    return config, tensors


def _check_same_base(model: nn.Module, config: dict, path, base_checkpoint) -> None:
    """The adapter in ``path`` (its ``config``) was trained on this base: the same checkpoint sha256 (when
    both are known) and the same GPTConfig (``RUNTIME_FIELDS`` excepted); else an AdapterError."""
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


def load_adapter(model: nn.Module, path: str | os.PathLike, base_checkpoint: str | os.PathLike | None = None) -> nn.Module:
    """Load an adapter saved by :func:`save_adapter` (either format) or by PEFT into ``model`` (in place) and return it.

    A model without LoRA layers gets them first (the saved ``r``, ``lora_alpha``, ``lora_dropout``,
    ``use_rslora``, ``use_dora``, ``init_lora_weights``, ``target_modules``, ``modules_to_save``). A tensor
    of a tied parameter (PEFT's copy of a GPT's ``lm_head`` when ``modules_to_save`` held ``"head"``) is
    skipped when it equals the model's, and refused when it differs. Everything is checked before any weight changes; an
    AdapterError names the problem: anything :func:`read_adapter` refuses, a ``base_checkpoint`` with
    another sha256 than at save time, a GPTConfig that differs from the saved ``gpt_config``
    (``RUNTIME_FIELDS`` excepted), a layer the model lacks, a missing, unexpected or mis-shaped tensor,
    LoRA layers with another ``r`` / ``lora_alpha``, or a merged model (unmerge first).
    """
    config, tensors = read_adapter(path)
    _check_same_base(model, config, path, base_checkpoint)
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

    if not existing:
        wrap_layers(model, targets, r, lora_alpha, lora_dropout, to_save, **variant)
    params = dict(model.named_parameters(remove_duplicate=False))
    with torch.no_grad():
        for key, t in tensors.items():
            params[key].copy_(t.to(dtype=params[key].dtype, device=params[key].device))
    return model
