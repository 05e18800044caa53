"""Checkpoints that resume exactly, shared by pretraining (:mod:`gpt.train`) and fine-tuning (:mod:`gpt.finetune`).

A checkpoint is a folder written as one unit::

    <folder>/
      <tensor files>.safetensors   weights, optimizer state, random-number states, ...
      state.json                   the loop's position and history, what the run was made from,
                                   and the sha256 of every tensor file (``"files"``)

:func:`write_checkpoint` builds it in a temporary folder, fsyncs it and renames it over the previous
checkpoint (:func:`gpt.io.files.atomic_dir`): a crash leaves the old checkpoint or the new one, never a
mix. :func:`read_state` and :func:`read_verified` refuse, with a
:class:`~gpt.errors.CheckpointError` naming the file, a folder whose files do not belong together.
Tensors read back are checked too: :func:`check_finite` (no NaN or inf) and :func:`load_state_dict_strict`
(exactly the model's tensors, with its shapes; also used for model files and GPT-2's weights).

Ctrl-C: inside ``with InterruptFlag() as interrupt:`` the first Ctrl-C only sets
``interrupt.requested``; the loop finishes its step, saves, and raises :class:`TrainingInterrupted`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import CheckpointError
from .files import atomic_dir, sha256_bytes

STATE_FILE = "state.json"


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by a training loop after Ctrl-C (SIGINT): the step in progress was finished, a
    checkpoint of it was saved (when the run has a checkpoint folder), and training stopped.

    ``step``: the last completed step; ``checkpoint``: the checkpoint folder (``None`` when nothing
    was saved); ``history``: the history so far. It is a ``KeyboardInterrupt``, so code that does
    not know it still treats it as an interrupt."""

    def __init__(self, step: int, checkpoint: Path | None, history: dict | None = None):
        where = f"; checkpoint saved in {checkpoint}" if checkpoint else "; nothing was saved"
        super().__init__(f"training interrupted after step {step}{where}")
        self.step, self.checkpoint, self.history = step, checkpoint, history


class InterruptFlag:
    """While installed, the first Ctrl-C (SIGINT) only sets ``requested``, which the loop checks
    between steps (so weights and optimizer state are never saved half-updated); a second one raises
    ``KeyboardInterrupt`` at once and sets ``forced``. Installs nothing outside the main thread."""

    def __init__(self):
        self.requested = self.forced = False
        self._previous = None
        self._installed = False

    def _handler(self, signum, frame):
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: finishing this step, then saving a checkpoint (press Ctrl-C again to stop at once, "
              "without saving)", file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            try:
                self._previous = signal.signal(signal.SIGINT, self._handler)
                self._installed = True
            except (ValueError, OSError):
                pass
        return self

    def __exit__(self, *exc):
        if self._installed:
            signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.default_int_handler)
        return False


def write_file(path: Path, data: bytes) -> None:
    """One file of a checkpoint, written into the temporary checkpoint folder (fsynced and renamed
    as a whole by :func:`gpt.io.files.atomic_dir`)."""
    path.write_bytes(data)


def write_checkpoint(folder: str | os.PathLike, files: dict[str, bytes], state: dict, format: str) -> Path:
    """Write ``files`` (name -> bytes) and ``state.json`` (``state`` plus ``format`` and the sha256 of
    every file) into ``folder`` as one unit, replacing the previous checkpoint there. Returns the folder."""
    doc = {"format": format, **state, "files": {name: sha256_bytes(data) for name, data in files.items()}}
    text = json.dumps(doc, indent=1, allow_nan=True) + "\n"
    with atomic_dir(folder, overwrite=True) as tmp:
        for name, data in files.items():
            write_file(tmp / name, data)
        write_file(tmp / STATE_FILE, text.encode("utf-8"))
    return Path(folder)


def read_state(folder: str | os.PathLike, format: str, required: dict[str, type | tuple] = {}) -> dict:
    """The parsed ``state.json`` of the checkpoint in ``folder`` (no tensors are read), checked for
    its ``format``, the ``required`` fields (name -> type) and a sha256 for every file."""
    folder = Path(folder)
    path = folder / STATE_FILE
    if not folder.is_dir():
        raise CheckpointError(f"nothing to resume: {folder} holds no checkpoint")
    if path.is_dir() or not path.exists():
        raise CheckpointError(f"the checkpoint {folder} is incomplete: {path} is missing; it cannot be resumed")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}): the checkpoint is damaged (truncated?) and cannot be resumed") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a checkpoint state (expected a JSON object, got {type(state).__name__})")
    if state.get("format") != format:
        raise CheckpointError(f"{path} has format {state.get('format')!r}, expected {format!r}; it cannot be resumed")
    for key, typ in {"files": dict, **required}.items():
        if key not in state:
            raise CheckpointError(f"{path} lacks the field {key!r}: the checkpoint is damaged and cannot be resumed")
        if not isinstance(state[key], typ) or isinstance(state[key], bool):
            raise CheckpointError(f"{path}: the field {key!r} is {state[key]!r}, not {type_name(typ)}: the checkpoint is damaged "
                                  "and cannot be resumed; start the run afresh")
    if not all(isinstance(v, str) for v in state["files"].values()):
        raise CheckpointError(f"{path} records no valid sha256 for its files: the checkpoint is damaged and cannot be resumed")
    return state


_TYPE_NAMES = {int: "a whole number", float: "a number", dict: "a JSON object", list: "a list", str: "a string", type(None): "null"}


def type_name(typ) -> str:
    """How a message names a JSON type (or a tuple of them): ``(int, type(None))`` -> "a whole number or null"."""
    types = typ if isinstance(typ, tuple) else (typ,)
    if int in types and float in types:
        types = tuple(t for t in types if t not in (int, float)) + (float,)
    return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def read_verified(folder: str | os.PathLike, name: str, state: dict) -> bytes:
    """The bytes of the checkpoint file ``name``, after checking them against the sha256 in ``state``."""
    folder = Path(folder)
    path, want = folder / name, state["files"].get(name)
    if want is None:
        raise CheckpointError(f"{folder / STATE_FILE} records no sha256 for {name}: the checkpoint is damaged and cannot be resumed")
    if not path.is_file():
        raise CheckpointError(f"the checkpoint {folder} is incomplete: {path} is missing; it cannot be resumed")
    data = path.read_bytes()
    got = sha256_bytes(data)
    if got != want:
        raise CheckpointError(
            f"{path} has sha256 {got}, but {folder / STATE_FILE} records {want}: the files of this checkpoint "
            "do not belong together (damaged, or copied from another step); it cannot be resumed"
        )
    return data


def check_finite(tensors: dict, source) -> None:
    """Refuse NaN or infinite values, naming the tensor."""
    for k, v in tensors.items():
        if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all()):
            n = int((~torch.isfinite(v)).sum())
            raise CheckpointError(
                f"{source}: tensor {k!r} holds {n} NaN or infinite value(s); the checkpoint is damaged "
                "(or training diverged) and is refused"
            )


def load_state_dict_strict(model: nn.Module, state: dict, source: str = "state dict") -> None:
    """Load ``state`` into ``model`` only if it holds exactly the model's tensors, each of the model's shape:
    a missing, extra or mis-shaped tensor is a :class:`~gpt.errors.CheckpointError` naming it and ``source``."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise CheckpointError(f"{source}: tensor {k!r} has shape {tuple(v.shape)}, the model expects {tuple(expected[k].shape)}")
    model.load_state_dict(state)


def optimizer_tensors(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's state as ``{"<parameter name>::<field>": tensor}`` (AdamW: exp_avg, exp_avg_sq, step)."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, val in optimizer.state.get(p, {}).items():
                out[f"{names[id(p)]}::{key}"] = val.detach().contiguous().cpu().reshape(val.shape)
    return out


def load_optimizer_tensors(model: nn.Module, optimizer: torch.optim.Optimizer, tensors: dict, source, complete: bool) -> None:
    """Put :func:`optimizer_tensors`' output back into ``optimizer``. A tensor of no trainable parameter,
    a non-finite value, or (with ``complete``) a trainable parameter without state is a CheckpointError."""
    check_finite(tensors, source)
    params = dict(model.named_parameters())
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    seen = set()
    for key, val in tensors.items():
        name, _, field = key.partition("::")
        if name not in params or id(params[name]) not in group_of or not field:
            raise CheckpointError(f"{source}: optimizer state {key!r} belongs to no trainable parameter of this model")
        p, g = params[name], group_of[id(params[name])]
        # as torch's Optimizer.load_state_dict: AdamW keeps `step` on the CPU unless capturable or fused
        host_step = field == "step" and not (g.get("capturable") or g.get("fused"))
        optimizer.state[p][field] = val if host_step else val.to(p.device)
        seen.add(name)
    if complete:
        missing = sorted(n for n, p in params.items() if id(p) in group_of and n not in seen)
        if missing:
            raise CheckpointError(f"{source} has no optimizer state for {missing[:5]}; the checkpoint is incomplete")
