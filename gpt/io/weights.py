"""Model files: a course GPT as one safetensors file, its weights with its config in the file's metadata.

:func:`save_model` writes one atomically (tied weights stored once); :func:`read_checkpoint` reads
and checks one (a damaged file, a missing config or a non-finite tensor is a
:class:`~gpt.errors.CheckpointError` naming the file); :func:`load_model` builds the :class:`~gpt.model.GPT`;
:func:`check_checkpoint_tokenizer` refuses a tokenizer whose vocabulary is not the checkpoint's.
:func:`reference_path` is where the package keeps the course's pretrained reference model (its card and
loading it are :mod:`gpt.teaching.reference`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from importlib import resources
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from ..errors import CheckpointError
from ..model import GPT, GPTConfig
from ..tokenizer import course_tokenizer, get_tokenizer
from .checkpoint import check_finite, load_state_dict_strict
from .files import atomic_write_bytes
from .tokenizer_files import check_vocabulary

REFERENCE_DIR = "reference"  # under gpt/assets/
REFERENCE_FILE = "model.safetensors"


def reference_path() -> Path:
    """The reference checkpoint shipped with the package: ``gpt/assets/reference/model.safetensors``."""
    return Path(str(resources.files("gpt") / "assets" / REFERENCE_DIR / REFERENCE_FILE))


def model_bytes(model: GPT, metadata: dict | None = None) -> bytes:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model.config.tie_weights:
        state.pop("lm_head.weight", None)
    meta = {"gpt_config": json.dumps(model.config.to_dict())}
    if getattr(model, "tokenizer_name", None):  # GPT-2's weights: the tokenizer travels with them
        meta["tokenizer"] = model.tokenizer_name
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()})
    return safetensors_bytes(state, metadata=meta)



def save_model(model: GPT, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Weights as safetensors (tied weights stored once), the config in the file's metadata.

    The file is written in one step (temporary file, fsync, rename): a crash leaves the old file or
    the new one. An existing file is replaced (commands check their outputs before calling this)."""
    atomic_write_bytes(path, model_bytes(model, metadata))



def _check_file(path: Path, what: str = "checkpoint") -> Path:
    if path.is_dir():
        hint = f"; did you mean {path / 'model.safetensors'}?" if (path / "model.safetensors").is_file() else ""
        raise CheckpointError(f"{path} is a folder, but a {what} file (.safetensors) is expected{hint}")
    if not path.exists():
        raise CheckpointError(f"{what} {path} does not exist")
    return path



def read_checkpoint(path: str | os.PathLike) -> tuple[GPTConfig, dict, dict]:
    """(config, state dict, metadata) of a safetensors checkpoint written by :func:`save_model`.

    A missing file, a folder, a damaged file, missing or malformed ``gpt_config`` metadata, or a
    tensor with NaN/inf values raises :class:`~gpt.errors.CheckpointError` naming the file."""
    path = _check_file(Path(path))
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        state = load_file(str(path))
    except Exception as e:  # safetensors raises several types for a damaged file
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({e})") from e
    if "gpt_config" not in meta:
        raise CheckpointError(f"{path} has no 'gpt_config' metadata: not a checkpoint of this package")
    try:
        raw = json.loads(meta.pop("gpt_config"))
    except ValueError as e:
        raise CheckpointError(f"{path}: its 'gpt_config' metadata is not valid JSON ({e}); the file is damaged") from e
    try:
        config = GPTConfig.from_dict(raw)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: its 'gpt_config' metadata is not a valid model configuration ({e})") from e
    check_finite(state, path)
    return config, state, meta



def load_model(path: str | os.PathLike, device="cpu", **config_overrides) -> GPT:
    """Build a :class:`GPT` from a checkpoint; any missing, extra, mis-shaped or non-finite tensor is an
    error naming it."""
    config, state, meta = read_checkpoint(path)
    if config_overrides:
        config = dataclasses.replace(config, **config_overrides)
    model = GPT(config)
    if config.tie_weights:
        state.setdefault("lm_head.weight", state.get("tok_emb.weight"))
    load_state_dict_strict(model, state, source=str(path))
    model.tokenizer_name = meta.get("tokenizer")  # "gpt2" for a saved GPT-2 (see GPT.tokenizer_name)
    return model.to(device)



def check_checkpoint_tokenizer(path: str | os.PathLike, tokenizer=None) -> None:
    """Refuse (:class:`~gpt.io.tokenizer_files.VocabularyMismatchError`) a checkpoint whose vocabulary is not
    ``tokenizer``'s (default: the tokenizer the checkpoint names, GPT-2's for a saved GPT-2, else the course
    tokenizer), by size and by the ``tokenizer_fingerprint`` it records (:func:`gpt.io.tokenizer_files.check_vocabulary`)."""
    config, _, meta = read_checkpoint(path)
    tokenizer = tokenizer or (get_tokenizer(meta["tokenizer"]) if meta.get("tokenizer") else course_tokenizer())
    check_vocabulary(config, tokenizer, meta.get("tokenizer_fingerprint"), source=str(path))
