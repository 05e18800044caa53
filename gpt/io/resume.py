"""A pretraining run's checkpoint, resumed exactly: ``run_dir/checkpoint/`` written as one unit::

    run_dir/
      checkpoint/                 replaced in one rename (gpt.io.files.atomic_dir): never half-written
        model.safetensors         the weights (what gpt.io.weights.save_model writes; load_model reads it)
        optimizer.safetensors     AdamW's moments and step counts, one tensor per "<param>::<field>"
        state.json                step, history, the sha256 of both tensor files, and what the run
                                  was made from: TrainConfig, model config, the token streams'
                                  sha256, and the caller's ``run_info`` (books, tokenizer, ...)

A crash while a checkpoint is written leaves the previous ``checkpoint/`` untouched. Resuming
checks the two hashes (so files of different steps are never mixed) and that this run is the same
run (same TrainConfig, model, data and ``run_info``), naming the first field that differs
(:func:`check_resume`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_bytes

from ..errors import CheckpointError, OutputExistsError
from ..model import GPTConfig
from ..train_config import TrainConfig
from .checkpoint import STATE_FILE, load_optimizer_tensors, load_state_dict_strict, optimizer_tensors, read_state, read_verified, write_checkpoint
from .files import sha256_bytes
from .weights import model_bytes, read_checkpoint


CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FORMAT = "gpt-course-checkpoint/2"
MODEL_FILE, OPTIMIZER_FILE = "model.safetensors", "optimizer.safetensors"
_IGNORED_ON_RESUME = {"checkpoint_interval", "compile", "stop_after"}  # TrainConfig fields that do not change what is learned
_RUNTIME_MODEL_FIELDS = {"attn_impl"}  # model config fields that only choose how the same numbers are computed


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    """The folder that holds a run's resumable checkpoint: ``run_dir/checkpoint``."""
    return Path(run_dir) / CHECKPOINT_DIR


def save_training_state(run_dir: str | os.PathLike, model, optimizer, state: dict, metadata: dict | None = None) -> Path:
    """Write the resumable checkpoint ``run_dir/checkpoint/`` (model.safetensors, optimizer.safetensors,
    state.json) as one unit (:func:`gpt.io.checkpoint.write_checkpoint`). Returns the folder."""
    files = {MODEL_FILE: model_bytes(model, metadata), OPTIMIZER_FILE: safetensors_bytes(optimizer_tensors(model, optimizer))}
    return write_checkpoint(checkpoint_dir(run_dir), files, state, CHECKPOINT_FORMAT)


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    """True if ``run_dir`` holds a training checkpoint (in this layout or the old one)."""
    run_dir = Path(run_dir)
    return (checkpoint_dir(run_dir) / STATE_FILE).exists() or (run_dir / STATE_FILE).exists()


_REQUIRED = {"step": int, "history": dict, "train_config": dict, "model_config": dict, "seconds": (int, float)}


def read_training_state(run_dir: str | os.PathLike) -> dict:
    """The parsed ``state.json`` of the checkpoint in ``run_dir`` (no tensors are read).

    A missing checkpoint, an old-layout one, or a truncated / invalid ``state.json`` raises
    :class:`~gpt.errors.CheckpointError` naming the file."""
    run_dir = Path(run_dir)
    ckpt = checkpoint_dir(run_dir)
    path = ckpt / STATE_FILE
    if not ckpt.is_dir():
        if (run_dir / STATE_FILE).exists():
            raise CheckpointError(
                f"{run_dir} holds a checkpoint in the old layout (state.json next to model.safetensors), whose "
                "files were written one by one and cannot be checked to belong together; it cannot be resumed. "
                "Start a new run (another folder, or --overwrite)"
            )
        old = sorted(run_dir.glob(f".{CHECKPOINT_DIR}.old-*")) if run_dir.is_dir() else []
        if old:
            raise CheckpointError(
                f"nothing to resume in {run_dir}: {ckpt} is missing, but {old[-1]} holds the previous checkpoint "
                f"(a crash interrupted replacing it); rename it to {ckpt} to resume"
            )
        raise CheckpointError(f"nothing to resume in {run_dir}: it holds no checkpoint ({path})")
    state = read_state(ckpt, CHECKPOINT_FORMAT, _REQUIRED)
    _check_progress(state, path)
    for f in (MODEL_FILE, OPTIMIZER_FILE):
        if f not in state["files"]:
            raise CheckpointError(f"{path} records no sha256 for {f}: the checkpoint is damaged and cannot be resumed")
    return state


def _check_progress(state: dict, path: Path) -> None:
    """The step a checkpoint records must lie inside its run, and agree with its history."""
    step, max_steps = state["step"], state["train_config"].get("max_steps")
    history = state["history"]
    steps = history.get("step")
    problems = [
        (step >= 0, f"step {step} is negative"),
        (not isinstance(max_steps, int) or step <= max_steps, f"step {step} is beyond the run's {max_steps} steps"),
        (all(isinstance(v, list) for k, v in history.items() if k != "compile_seconds"), "its history holds a value that is not a list"),
        (isinstance(steps, list) and len(steps) == step and steps[-1:] in ([], [step]),
         f"its history records {len(steps) if isinstance(steps, list) else steps!r} steps, but step is {step}"),
        (math.isfinite(state["seconds"]) and state["seconds"] >= 0, f"seconds {state['seconds']} is not a finite number >= 0"),
    ]
    for ok, problem in problems:
        if not ok:
            raise CheckpointError(f"{path}: {problem}; the checkpoint is damaged and cannot be resumed. Start a new run "
                                  "(another folder, or --overwrite)")


def canonical(x):
    return json.loads(json.dumps(x))


def config_dict(cfg: TrainConfig) -> dict:
    return canonical(dataclasses.asdict(cfg))


def data_info(train_t: torch.Tensor, val_t: torch.Tensor) -> dict:
    """The token streams' sizes and sha256: a resumed run must train on the same data."""
    def digest(t):
        return sha256_bytes(t.contiguous().numpy().tobytes())

    return {"training tokens": len(train_t), "training data sha256": digest(train_t),
            "validation tokens": len(val_t), "validation data sha256": digest(val_t)}


def check_resume(state: dict, *, cfg: TrainConfig | None = None, model_config: GPTConfig | None = None,
                 run_info: dict | None = None, data: dict | None = None, source="the checkpoint") -> None:
    """Refuse to resume a checkpoint made by a different run: raises :class:`~gpt.errors.CheckpointError`
    naming the first field that differs and both values. Only the parts given are compared."""

    def differ(field, old, new, hint=""):
        raise CheckpointError(
            f"cannot resume {source}: {field} differs: the checkpoint has {old!r}, this run has {new!r}. "
            f"Resume with the same {field}{hint}, or start a new run (another folder, or --overwrite)"
        )

    if run_info is not None:
        saved = state.get("run", {}) or {}
        new = canonical(run_info)
        for k in list(saved) + [k for k in new if k not in saved]:
            if saved.get(k) != new.get(k):
                differ(k, saved.get(k), new.get(k))
    if model_config is not None:
        new = canonical(model_config.to_dict())
        saved = state.get("model_config", {})
        for k in list(saved) + [k for k in new if k not in saved]:
            if k not in _RUNTIME_MODEL_FIELDS and saved.get(k) != new.get(k):
                differ(f"model config {k}", saved.get(k), new.get(k))
    if cfg is not None:
        new = config_dict(cfg)
        saved = state.get("train_config", {})
        for k in list(saved) + [k for k in new if k not in saved]:
            if k not in _IGNORED_ON_RESUME and saved.get(k) != new.get(k):
                differ(f"TrainConfig.{k}", saved.get(k), new.get(k))
    if data is not None:
        saved = state.get("data", {})
        for k, v in data.items():
            if saved.get(k) != v:
                differ(k, saved.get(k), v, " (the same books, tokenizer and validation split)")


def load_training_state(run_dir: str | os.PathLike, model, optimizer) -> dict:
    """Load the checkpoint in ``run_dir`` into ``model`` and ``optimizer``; returns its state.

    The tensor files must have the sha256 that ``state.json`` records, hold finite values, and fit
    the model and optimizer; otherwise :class:`~gpt.errors.CheckpointError` names the problem."""
    run_dir = Path(run_dir)
    ckpt = checkpoint_dir(run_dir)
    state = read_training_state(run_dir)
    read_verified(ckpt, MODEL_FILE, state)
    opt_bytes = read_verified(ckpt, OPTIMIZER_FILE, state)
    _, weights, _ = read_checkpoint(ckpt / MODEL_FILE)
    if model.config.tie_weights and "tok_emb.weight" in weights:
        weights.setdefault("lm_head.weight", weights["tok_emb.weight"])
    load_state_dict_strict(model, weights, source=str(ckpt / MODEL_FILE))
    try:
        opt = safetensors_load(opt_bytes)
    except Exception as e:
        raise CheckpointError(f"{ckpt / OPTIMIZER_FILE} is not a readable safetensors file ({e})") from e
    load_optimizer_tensors(model, optimizer, opt, ckpt / OPTIMIZER_FILE, complete=state["step"] > 0)
    return state


def run_record(cfg: TrainConfig, model_config: GPTConfig, run_info: dict | None, data: dict | None, **how) -> dict:
    """What ``state.json`` records of the run besides its progress: its configs, data, ``run_info`` and
    ``how`` it runs (precision, device, processes)."""
    return {"train_config": config_dict(cfg), "model_config": canonical(model_config.to_dict()), "run": canonical(run_info or {}),
            "data": data, **how}


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool, parallel=None, **same_run) -> None:
    """Before a run starts in ``run_dir``: remove temporary folders a killed process left; with ``resume``,
    check that the checkpoint there is of the same run (``same_run``: :func:`check_resume`'s keywords);
    without it, refuse an existing checkpoint (:class:`~gpt.errors.OutputExistsError`) unless
    ``overwrite``, which removes it. Under DDP (``parallel``) rank 0 alone changes files."""
    main = parallel is None or parallel.is_main
    for stale in run_dir.glob(f".{CHECKPOINT_DIR}.*.tmp") if run_dir.is_dir() and main else []:
        shutil.rmtree(stale, ignore_errors=True)  # left by a process killed while writing a checkpoint
    if resume:
        check_resume(read_training_state(run_dir), source=str(run_dir), **same_run)
    elif has_checkpoint(run_dir):
        if not overwrite:
            raise OutputExistsError(
                f"{run_dir} already holds a training checkpoint; resume it (resume=True, --resume), "
                "replace it (overwrite=True, --overwrite), or choose another folder"
            )
        if parallel:
            parallel.barrier()  # every rank has seen the old checkpoint before rank 0 removes it
        if main:
            shutil.rmtree(checkpoint_dir(run_dir), ignore_errors=True)
            for legacy in (STATE_FILE, OPTIMIZER_FILE):  # the old layout kept these next to model.safetensors
                (run_dir / legacy).unlink(missing_ok=True)
