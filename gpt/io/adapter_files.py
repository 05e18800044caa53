"""Adapter files: a LoRA adapter's folder on disk, in the course's format or in Hugging Face PEFT's.

Both formats are a folder of two files written in one step (:func:`gpt.io.files.atomic_dir`: both
appear together or not at all): the course's (``format="course"``, the default) and PEFT's
(``format="peft"``: what ``PeftModel.from_pretrained(model, path)`` reads). :func:`read_adapter_files`
reads both, also folders that PEFT's ``save_pretrained`` wrote, and returns them in the course's terms.

The course's format:

* ``adapter_model.safetensors`` -- the LoRA factors (``<layer>.lora_A.weight``, ``<layer>.lora_B.weight``)
  plus every deliberately trainable non-LoRA tensor (e.g. a classification head ``head.weight``);
  keys are the model's own state-dict keys (PEFT prefixes them with ``base_model.model.``; we don't).
* ``adapter_config.json`` -- ``r``, ``lora_alpha``, ``lora_dropout``, ``target_modules`` (the exact
  qualified names of the wrapped layers), ``modules_to_save``, ``use_rslora``, ``use_dora``,
  ``init_lora_weights``, ``converted_from`` (``"pissa"`` or null), ``bias`` ("none"),
  ``base_model_name_or_path``, ``base_model_sha256`` (of the base .safetensors file, when given),
  ``base_weights_sha256`` (of the base weights the adapter leaves alone, :func:`gpt.io.adapters.base_weights_sha256`),
  ``tensors`` (key -> shape), ``gpt_config``, a free-form ``extra`` dict, and ``checksum``
  (:func:`adapter_checksum`: the sha256 of the tensors and of the rest of the config).

The checksum (``format_version`` 2 on): ``{"tensors_sha256": ..., "config_sha256": ...}``, in
``adapter_config.json`` (course format) or in the safetensors header's course config (PEFT format,
where ``config_sha256`` covers PEFT's ``adapter_config.json``). Reading verifies it, so a bit flip in the
weights or an edited value (``lora_alpha`` 4 -> 400) is an :class:`~gpt.errors.AdapterError` naming the
file. Folders without one (written by PEFT itself, or by ``format_version`` 1) load with a warning that
they are unverified.

What goes into an adapter, and loading one onto a model, is :mod:`gpt.io.adapters`. Reading checks
the files: a folder that is damaged, incomplete, edited, or holds NaN/inf, or whose ``r`` disagrees with
its factors' shapes, raises :class:`~gpt.errors.AdapterError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..errors import AdapterError, ConfigError, OutputExistsError
from .files import atomic_dir, check_output, sha256_bytes, sha256_file

__all__ = ["ADAPTER_WEIGHTS_NAME", "ADAPTER_CONFIG_NAME", "ADAPTER_FORMAT", "ADAPTER_FORMATS", "PEFT_PREFIX", "base_sha256",
           "check_adapter_folder", "write_adapter", "adapter_files", "read_adapter_files", "tensors_sha256", "adapter_checksum"]

ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_FORMAT = "gpt-course-lora"
ADAPTER_FORMAT_VERSION = 2  # 2: the files carry a checksum (and the base weights' sha256)
ADAPTER_FORMATS = ("course", "peft")
PEFT_PREFIX = "base_model.model."  # PEFT's tensor keys: the model's own keys under this prefix
PEFT_METADATA_KEY = "gpt_course"  # our metadata in a PEFT-format file's safetensors header (PEFT ignores it)


def base_sha256(base_checkpoint) -> str | None:
    """sha256 of a base checkpoint given as a file path, or a 64-hex-digit digest passed through."""
    if base_checkpoint is None:
        return None
    if Path(base_checkpoint).is_file():
        return sha256_file(base_checkpoint)
    if isinstance(base_checkpoint, str) and re.fullmatch(r"[0-9a-fA-F]{64}", base_checkpoint):
        return base_checkpoint.lower()
    raise AdapterError(f"base checkpoint {str(base_checkpoint)!r} is neither a file nor a sha256 digest; give the base model's .safetensors file")


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of named tensors: each key (sorted), dtype, shape and raw bytes, so any changed bit changes it."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{list(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _json_sha256(doc) -> str:
    """sha256 of a JSON document's content (keys sorted, as it reads back from a file)."""
    doc = json.loads(json.dumps(doc, allow_nan=False))  # as a file gives it back: tuples as lists, keys as strings
    return sha256_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode())


def adapter_checksum(config_doc: dict, tensors: dict[str, torch.Tensor]) -> dict:
    """The checksum an adapter carries: ``{"tensors_sha256", "config_sha256"}`` of its tensors (keys
    without PEFT's prefix) and of the JSON document ``config_doc`` that holds its settings (the course
    config without ``checksum``, or PEFT's ``adapter_config.json``)."""
    return {"tensors_sha256": tensors_sha256(tensors), "config_sha256": _json_sha256(config_doc)}


def check_adapter_folder(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Before any work: ``path`` can become an adapter folder. An existing non-empty folder is
    :class:`~gpt.errors.OutputExistsError` unless ``overwrite`` (one holding more than an adapter's two files even then)."""
    folder = check_output(path, kind="dir", overwrite=overwrite, flag="overwrite=True")
    if folder.is_dir():
        others = sorted(p.name for p in folder.iterdir() if p.name not in (ADAPTER_WEIGHTS_NAME, ADAPTER_CONFIG_NAME))
        if others:
            raise OutputExistsError(f"{folder} holds files that are not part of an adapter ({others[:3]}); save the adapter into its own folder")
    return folder


def write_adapter(folder: Path, config: dict, tensors: dict[str, torch.Tensor], *, format: str = "course", overwrite: bool = False,
                  peft_extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``config`` (the course's adapter config) and ``tensors`` into ``folder`` in one step, in ``format``.

    ``"peft"``: PEFT's ``adapter_config.json`` and keys (``base_model.model.<key>``), the course config in the
    safetensors header (PEFT ignores it, :func:`read_adapter_files` reads it), plus ``peft_extra``: the
    tensors PEFT's ``modules_to_save`` suffix matching expects to find (see :func:`gpt.io.adapters.save_adapter`).
    Either way the course config gets its ``checksum`` (:func:`adapter_checksum`)."""
    if format == "peft":
        peft_config = _peft_config(config)
        everything = {**tensors, **(peft_extra or {})}
        config = {**config, "checksum": adapter_checksum(peft_config, everything)}
        metadata = {"format": "pt", PEFT_METADATA_KEY: json.dumps(config, allow_nan=False)}
        config, tensors = peft_config, {PEFT_PREFIX + k: v for k, v in everything.items()}
    else:
        metadata = {"format": ADAPTER_FORMAT}
        config = {**config, "checksum": adapter_checksum(config, tensors)}
    text = json.dumps(config, indent=2, allow_nan=False)
    with atomic_dir(folder, overwrite=overwrite, flag="overwrite=True") as tmp:
        save_file(tensors, str(tmp / ADAPTER_WEIGHTS_NAME), metadata=metadata)
        (tmp / ADAPTER_CONFIG_NAME).write_text(text + "\n")
    return folder


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


def _check_adapter_config(config, source: Path, check_settings) -> None:
    """AdapterError naming the key and ``source`` for anything :func:`gpt.io.adapters.load_adapter` could not use."""
    if not isinstance(config, dict):
        raise AdapterError(f"{source} holds a JSON {type(config).__name__}, not an adapter config object")
    if config.get("format") != ADAPTER_FORMAT:
        raise AdapterError(f"{source} is not a {ADAPTER_FORMAT} adapter config (format={config.get('format')!r}); give a folder written by save_adapter")
    for key in ("r", "lora_alpha", "target_modules"):
        if key not in config:
            raise AdapterError(f"{source} lacks the key {key!r}; the file is damaged or incomplete: save the adapter again")
    if check_settings is not None:
        try:
            check_settings(config)
        except ConfigError as e:
            raise AdapterError(f"{source}: {e}; the file is damaged: save the adapter again") from e

    def names(key: str) -> bool:
        v = config.get(key)
        return isinstance(v, list) and all(isinstance(s, str) and s for s in v) and len(set(v)) == len(v)

    if not names("target_modules") or not config["target_modules"]:
        raise AdapterError(f"{source}: 'target_modules' must be a non-empty list of distinct module names, got {config['target_modules']!r}")
    if config.get("modules_to_save") is not None and not names("modules_to_save"):
        raise AdapterError(f"{source}: 'modules_to_save' must be a list of distinct module names, got {config['modules_to_save']!r}")
    for key, kind in (("gpt_config", dict), ("tensors", dict), ("base_model_sha256", str), ("base_weights_sha256", str)):
        if config.get(key) is not None and not isinstance(config[key], kind):
            raise AdapterError(f"{source}: {key!r} must be a {kind.__name__} or null, got {config[key]!r}")


def adapter_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(adapter_config.json, adapter_model.safetensors)`` of the adapter folder ``path`` (or of one of its
    two files); :class:`~gpt.errors.AdapterError` naming what is missing."""
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
    return cfg_file, weights_file


def read_adapter_files(path: str | os.PathLike, check_settings=None) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, tensors) of an adapter folder written by :func:`write_adapter` (or one of its two files),
    or by PEFT's ``save_pretrained``: a PEFT-format folder comes back in the course's terms (the config's
    keys as the course format writes them, ``"source_format": "peft"``; keys without ``base_model.model.``).

    Both are checked: :class:`AdapterError`, naming the file, for a missing folder or file, invalid
    JSON, a damaged safetensors file, a missing or bad config key, tensors that disagree with the
    config's ``tensors`` list, a tensor that is not floating point or holds NaN/inf, an ``r`` other than
    the factors' rank, or files that no longer match their recorded checksum (a folder without one --
    PEFT's own, or ``format_version`` 1 -- loads with a warning that it is unverified).
    ``check_settings(config)``: the caller's check of the LoRA settings (``r``, ``lora_alpha``, ...); a
    :class:`~gpt.errors.ConfigError` it raises becomes an AdapterError naming the file.
    """
    cfg_file, weights_file = adapter_files(path)
    try:
        config = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # unreadable, not UTF-8, or not JSON
        raise AdapterError(f"{cfg_file} is not valid JSON ({e}); the file is damaged: save the adapter again") from e
    try:
        tensors = load_file(str(weights_file))
    except Exception as e:  # safetensors raises several types for a truncated or garbage file
        raise AdapterError(f"{weights_file} is damaged or not a safetensors file ({e}); save the adapter again") from e
    peft_config = config if isinstance(config, dict) and "peft_type" in config else None
    if peft_config is not None:
        config, tensors = _from_peft(peft_config, tensors, cfg_file, weights_file)
    _check_adapter_config(config, cfg_file, check_settings)

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
    _check_ranks(config, tensors, cfg_file, weights_file)
    _verify_checksum(config, tensors, peft_config, cfg_file, weights_file)
    return config, tensors


def _check_ranks(config: dict, tensors: dict, cfg_file: Path, weights_file: Path) -> None:
    """The config's ``r`` is the factors' rank: ``lora_A.weight`` (r, in), ``lora_B.weight`` (out, r),
    DoRA's ``lora_magnitude_vector`` (out,); else AdapterError naming both files."""
    r = config["r"]
    for name in config["target_modules"]:
        A, B = tensors.get(f"{name}.lora_A.weight"), tensors.get(f"{name}.lora_B.weight")
        for key, t, dim in ((f"{name}.lora_A.weight", A, 0), (f"{name}.lora_B.weight", B, 1)):
            if t is not None and (t.ndim != 2 or t.shape[dim] != r):
                raise AdapterError(f"{cfg_file} says r={r}, but {weights_file.name} holds {key!r} of shape {list(t.shape)} "
                                   f"(a rank-{r} factor is {'(r, in)' if dim == 0 else '(out, r)'}); the two files disagree: save the adapter again")
        m = tensors.get(f"{name}.lora_magnitude_vector")
        if m is not None and B is not None and list(m.shape) != [B.shape[0]]:
            raise AdapterError(f"{weights_file}: {name}.lora_magnitude_vector has shape {list(m.shape)}, its lora_B has {B.shape[0]} rows; "
                               "the file is damaged: save the adapter again")


def _verify_checksum(config: dict, tensors: dict, peft_config: dict | None, cfg_file: Path, weights_file: Path) -> None:
    """The files still hold what was saved: the recorded ``checksum`` (:func:`adapter_checksum`) against the
    tensors and the config document; AdapterError naming the file that changed. Without a checksum
    (PEFT's own files, ``format_version`` 1) a warning says the adapter is loaded unverified."""
    checksum, version = config.get("checksum"), config.get("format_version", 1)
    if checksum is None:
        if peft_config is None and (not isinstance(version, int) or version >= 2):
            raise AdapterError(f"{cfg_file} has no 'checksum', but a format_version {version!r} adapter carries one: the file was "
                               "edited or damaged; restore it from a copy or save the adapter again")
        source = "written by PEFT" if peft_config is not None else f"saved before adapters carried one (format_version {version})"
        warnings.warn(f"adapter {cfg_file.parent} carries no checksum ({source}): loaded unverified; save it again with "
                      "gpt.io.adapters.save_adapter to record one", stacklevel=5)
        return
    if not (isinstance(checksum, dict) and all(isinstance(checksum.get(k), str) for k in ("tensors_sha256", "config_sha256"))):
        raise AdapterError(f"{cfg_file}: 'checksum' must be {{'tensors_sha256': ..., 'config_sha256': ...}}, got {checksum!r}; "
                           "the file is damaged: save the adapter again")
    doc = peft_config if peft_config is not None else {k: v for k, v in config.items() if k != "checksum"}
    got = adapter_checksum(doc, tensors)
    if got["tensors_sha256"] != checksum["tensors_sha256"]:
        raise AdapterError(f"{weights_file} was changed after it was saved: its tensors have sha256 {got['tensors_sha256']}, "
                           f"but the adapter's checksum records {checksum['tensors_sha256']} (a damaged disk or copy, or an edit); "
                           "restore the adapter from a copy or save it again")
    if got["config_sha256"] != checksum["config_sha256"]:
        raise AdapterError(f"{cfg_file} was changed after it was saved: its content has sha256 {got['config_sha256']}, but the "
                           f"adapter's checksum records {checksum['config_sha256']} (an edited value such as lora_alpha or r changes "
                           "what the adapter computes); restore the file from a copy or save the adapter again")


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
        "base_model_sha256": meta.get("base_model_sha256"), "base_weights_sha256": meta.get("base_weights_sha256"),
        "gpt_config": meta.get("gpt_config"), "checksum": meta.get("checksum"),
        "converted_from": meta.get("converted_from"), "extra": meta.get("extra") or {},
    }
    return config, tensors
