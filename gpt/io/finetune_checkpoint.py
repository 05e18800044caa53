"""A fine-tuning run's checkpoint: one folder, written in one step, that resumes to exactly the weights of an uninterrupted run.

:func:`save_checkpoint` writes a :class:`gpt.finetune.Run`'s state (trainable weights, optimizer state,
the best epoch's weights, random-number states, the position in the epoch) with
:func:`gpt.io.checkpoint.write_checkpoint`; :func:`load_checkpoint` puts it back, after checking that
it belongs to this run (:func:`run_fingerprint`: the config, the data, the frozen weights, the trainable tensors).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load, save

from ..errors import CheckpointError
from .checkpoint import (STATE_FILE, check_finite, load_optimizer_tensors, optimizer_tensors, read_state, read_verified,
                         write_checkpoint)

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_WEIGHTS", "run_fingerprint", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = "gpt-course-finetune-checkpoint/1"
CHECKPOINT_WEIGHTS = "training_state.safetensors"  # trainable weights, optimizer state, best weights, RNG states


def run_fingerprint(run) -> dict:
    """What a checkpoint must match to be resumed by this run: config, data, and the frozen weights."""
    h = hashlib.sha256()
    for name in ("train", "val"):
        ids, y = run.data[name]
        h.update(json.dumps([ids, y.tolist()]).encode())
    frozen = hashlib.sha256()
    for n, p in run.model.named_parameters():
        if not p.requires_grad:
            frozen.update(n.encode() + p.detach().cpu().contiguous().numpy().tobytes())
    return {
        "config": run.config.to_dict(),
        "data_sha256": h.hexdigest(),
        "frozen_weights_sha256": frozen.hexdigest(),
        "trainable": {n: list(p.shape) for n, p in run.model.named_parameters() if p.requires_grad},
    }


def save_checkpoint(run, folder: str | os.PathLike) -> Path:
    """Write the run's state into ``folder`` in one step (:func:`gpt.io.checkpoint.write_checkpoint`)."""

    tensors = {f"param::{n}": p.detach().cpu().contiguous() for n, p in run.model.named_parameters() if p.requires_grad}
    tensors.update({f"optim::{k}": v for k, v in optimizer_tensors(run.model, run.optimizer).items()})
    if run.best is not None:
        tensors.update({f"best::{n}": w.cpu().contiguous() for n, w in run.best[2].items()})
    tensors["rng::torch"] = torch.get_rng_state()
    tensors["rng::batches"] = run.batch_generator.get_state()
    state = {
        **run_fingerprint(run),
        "step": run.step, "epoch": run.epoch, "epoch_batches": run.epoch_batches, "batch_in_epoch": run.batch_in_epoch,
        "loss_sum": run.loss_sum, "correct": run.correct, "seen": run.seen,
        "history": run.history, "best_key": list(run.best[0]) if run.best else None, "best_epoch": run.best[1] if run.best else None,
        "step_seconds": run.step_seconds, "train_seconds": run.train_seconds, "activation_peak": run.meter.peak_bytes,
    }
    return write_checkpoint(folder, {CHECKPOINT_WEIGHTS: save(tensors)}, state, CHECKPOINT_FORMAT)


_NUMBER, _OPTIONAL_INT = (int, float), (int, type(None))
_STATE_FIELDS = {"config": dict, "step": int, "epoch": int, "epoch_batches": (list, type(None)), "batch_in_epoch": int,
                 "loss_sum": _NUMBER, "correct": int, "seen": int, "history": dict, "best_key": (list, type(None)),
                 "best_epoch": _OPTIONAL_INT, "step_seconds": _NUMBER, "train_seconds": _NUMBER, "activation_peak": int}


def _check_progress(state: dict, run, path: Path) -> None:
    """The position a checkpoint records must lie inside this run: refused (CheckpointError) otherwise."""
    epochs, batches = run.config.epochs, state["epoch_batches"]
    problems = [
        (0 <= state["epoch"] <= epochs, f"epoch {state['epoch']} is outside the run's 0..{epochs} epochs"),
        (0 <= state["step"] <= run.total_steps, f"step {state['step']} is outside the run's 0..{run.total_steps} steps"),
        (isinstance(done := state["history"].get("epoch"), list) and len(done) == state["epoch"],
         f"its history records the epochs {state['history'].get('epoch')!r}, but epoch is {state['epoch']}"),
        (0 <= state["batch_in_epoch"] <= (len(batches) if batches is not None else 0),
         f"batch_in_epoch {state['batch_in_epoch']} is outside the epoch's {len(batches or [])} batches"),
        (state["best_epoch"] is None or 1 <= state["best_epoch"] <= state["epoch"],
         f"best_epoch {state['best_epoch']} is not one of the epochs done (1..{state['epoch']})"),
        (min(state["seen"], state["correct"], state["activation_peak"]) >= 0 and state["correct"] <= state["seen"],
         "its counts (seen, correct, activation_peak) are negative or inconsistent"),
    ]
    for ok, problem in problems:
        if not ok:
            raise CheckpointError(f"{path}: {problem}; the checkpoint does not belong to this run or is damaged. Start the run "
                                  "afresh (without --resume, or with --overwrite)")


def load_checkpoint(run, folder: str | os.PathLike) -> None:
    """Continue ``run`` (fresh from :func:`gpt.finetune.setup`) from the checkpoint in ``folder``.

    Refused with a :class:`~gpt.errors.CheckpointError` naming the difference when the checkpoint
    is damaged or belongs to another run: another config, other data, other frozen weights (another
    base checkpoint), other trainable tensors.
    """

    folder = Path(folder)
    if not (folder / STATE_FILE).is_file():
        raise CheckpointError(f"{folder} holds no complete fine-tuning checkpoint (needs {STATE_FILE} and {CHECKPOINT_WEIGHTS})")
    state = read_state(folder, CHECKPOINT_FORMAT, _STATE_FIELDS)
    tensors = load(read_verified(folder, CHECKPOINT_WEIGHTS, state))
    mine = run_fingerprint(run)
    if state["config"] != mine["config"]:
        diff = sorted(k for k in mine["config"] if state["config"].get(k) != mine["config"][k])
        k = diff[0]
        raise CheckpointError(
            f"the checkpoint in {folder} was made with {k}={state['config'].get(k)!r}, this run has {k}={mine['config'][k]!r} "
            f"(differing: {diff}); resume with the same settings, or start afresh without --resume"
        )
    for key, what in (("data_sha256", "training/validation data"), ("frozen_weights_sha256", "frozen (base) weights"),
                      ("trainable", "trainable tensors")):
        if state.get(key) != mine[key]:
            raise CheckpointError(f"the checkpoint in {folder} was made with other {what} than this run; it cannot be resumed")
    _check_progress(state, run, folder / STATE_FILE)
    check_finite(tensors, folder / CHECKPOINT_WEIGHTS)
    named = dict(run.model.named_parameters())
    with torch.no_grad():
        for n in mine["trainable"]:
            named[n].copy_(tensors[f"param::{n}"])
    optim = {k.removeprefix("optim::"): v for k, v in tensors.items() if k.startswith("optim::")}
    load_optimizer_tensors(run.model, run.optimizer, optim, folder / CHECKPOINT_WEIGHTS, complete=state["step"] > 0)
    if state["best_epoch"] is not None:
        run.best = (tuple(state["best_key"]), state["best_epoch"], {n: tensors[f"best::{n}"].to(run.device) for n in mine["trainable"]})
    torch.set_rng_state(tensors["rng::torch"])
    run.batch_generator.set_state(tensors["rng::batches"])
    run.step, run.epoch, run.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
    run.epoch_batches = state["epoch_batches"]
    run.loss_sum, run.correct, run.seen = state["loss_sum"], state["correct"], state["seen"]
    run.history = state["history"]
    run.step_seconds, run.train_seconds = state["step_seconds"], state["train_seconds"]
    run.meter.peak_bytes = state["activation_peak"]
    run.resumed = True
