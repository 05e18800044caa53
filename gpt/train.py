"""Pretraining: AdamW, warmup + cosine schedule, clipping, evaluation, bf16 autocast, checkpoints that resume exactly.

A run folder (``run_dir``) holds one resumable checkpoint, written as a unit::

    run_dir/
      checkpoint/                 replaced in one rename (gpt.io.files.atomic_dir): never half-written
        model.safetensors         the weights (what save_model writes; load_model reads it)
        optimizer.safetensors     AdamW's moments and step counts, one tensor per "<param>::<field>"
        state.json                step, history, the sha256 of both tensor files, and what the run
                                  was made from: TrainConfig, model config, the token streams'
                                  sha256, and the caller's ``run_info`` (books, tokenizer, ...)

A crash while a checkpoint is written leaves the previous ``checkpoint/`` untouched. Resuming
checks the two hashes (so files of different steps are never mixed) and that this run is the same
run (same TrainConfig, model, data and ``run_info``), naming the first field that differs.
Ctrl-C during :func:`pretrain` finishes the current step, saves a checkpoint, and raises
:class:`TrainingInterrupted`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load as _st_load
from safetensors.torch import load_file
from safetensors.torch import save as _st_save

from .runtime.device import autocast, cpu_has_fast_bf16, pick_device, resolve_precision  # noqa: F401  (part of this module's API)
from .errors import CheckpointError, ConfigError, OutputExistsError
from .io.checkpoint import (  # noqa: F401  (TrainingInterrupted is part of this module's API)
    STATE_FILE, InterruptFlag, TrainingInterrupted, check_finite, load_optimizer_tensors, optimizer_tensors, read_state, read_verified,
    sha256_bytes, write_checkpoint,
)
from .io.files import atomic_write_bytes
from .loss import cross_entropy, linear_cross_entropy
from .model import GPT, GPTConfig

__all__ = [
    "TrainConfig",
    "TrainingInterrupted",
    "CheckpointError",
    "pick_device",
    "resolve_precision",
    "autocast",
    "make_optimizer",
    "lr_at",
    "get_batch",
    "lm_loss",
    "train_step",
    "compile_loss",
    "require_compiler",
    "evaluate",
    "save_model",
    "read_checkpoint",
    "load_model",
    "load_state_dict_strict",
    "save_training_state",
    "read_training_state",
    "check_resume",
    "load_training_state",
    "checkpoint_dir",
    "has_checkpoint",
    "pretrain",
    "CHECKPOINT_DIR",
]


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


@dataclass
class TrainConfig:
    """Hyperparameters of a pretraining run. Every field is checked on construction; a value that
    cannot work raises :class:`~gpt.errors.ConfigError` (a ``ValueError``) naming the field."""

    max_steps: int = 1000
    batch_size: int = 16
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0  # None or 0: no clipping
    eval_interval: int = 100
    eval_batches: int = 20
    precision: str = "auto"  # "auto" (bf16 where fast), "bf16" or "fp32"
    device: str = "auto"
    seed: int = 1234
    checkpoint_interval: int = 0  # 0: only at the end (when a run folder is given)
    compile: bool = False  # torch.compile the forward pass and loss (opt-in: compiling takes ~5-60 s)

    def __post_init__(self):
        for name in ("max_steps", "batch_size", "eval_interval", "eval_batches"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise ConfigError(f"TrainConfig.{name} must be a whole number >= 1, got {v!r}")
        for name in ("warmup_steps", "checkpoint_interval"):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                raise ConfigError(f"TrainConfig.{name} must be a whole number >= 0, got {v!r}")
        if not self.warmup_steps <= self.max_steps:
            raise ConfigError(f"TrainConfig.warmup_steps ({self.warmup_steps}) must be between 0 and max_steps ({self.max_steps})")
        if not _is_int(self.seed):
            raise ConfigError(f"TrainConfig.seed must be a whole number, got {self.seed!r}")
        if not _is_real(self.lr) or self.lr <= 0:
            raise ConfigError(f"TrainConfig.lr must be a finite number > 0, got {self.lr!r}")
        if not _is_real(self.min_lr) or not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"TrainConfig.min_lr must be between 0 and lr ({self.lr!r}), got {self.min_lr!r}")
        if not _is_real(self.weight_decay) or self.weight_decay < 0:
            raise ConfigError(f"TrainConfig.weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if self.grad_clip is not None and (not _is_real(self.grad_clip) or self.grad_clip < 0):
            raise ConfigError(f"TrainConfig.grad_clip must be None or a finite number >= 0, got {self.grad_clip!r}")
        try:
            betas = tuple(self.betas)
        except TypeError:
            betas = None
        if betas is None or len(betas) != 2 or not all(_is_real(b) and 0 <= b < 1 for b in betas):
            raise ConfigError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = tuple(float(b) for b in betas)
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"TrainConfig.precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")
        if not isinstance(self.compile, bool):
            raise ConfigError(f"TrainConfig.compile must be True or False, got {self.compile!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError(f"TrainConfig.device must be 'auto' or a torch device such as 'cpu' or 'cuda', got {self.device!r}")


# ---------------------------------------------------------------------------------------------
# Optimizer and schedule


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.95), fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (linear and embedding weights); biases and norms get none.

    ``fused`` (default: where every parameter is on a CPU or a CUDA GPU) runs PyTorch's fused AdamW,
    one kernel for all parameters instead of a Python loop over them: the same update, ~6x
    faster for the course model on a CPU (1.1 ms vs 6.9 ms a step)."""
    decay, no_decay = [], []
    for p in model.parameters():  # a tied weight appears once
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if fused is None:
        fused = bool(groups) and all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=bool(fused))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr`` then cosine decay to ``min_lr`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


# ---------------------------------------------------------------------------------------------
# Batches: a pure function of (seed, step), so a resumed run sees exactly the same batches.


def get_batch(ids: torch.Tensor, context_length: int, batch_size: int, seed: int, step: int):
    """Random windows of ``context_length + 1`` tokens; returns inputs and next-token targets, (B, T) each."""
    if len(ids) < context_length + 2:
        raise ConfigError(f"a token stream of {len(ids)} tokens is too short for windows of {context_length + 1}; need at least {context_length + 2}")
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, len(ids) - context_length - 1, (batch_size,), generator=g)
    windows = torch.stack([ids[s : s + context_length + 1] for s in starts.tolist()])
    return windows[:, :-1], windows[:, 1:]


def lm_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of ``model`` on inputs ``x`` and targets ``y`` (B, T each).

    The same number as ``F.cross_entropy(model(x).flatten(0, 1).float(), y.flatten())``, computed by
    :mod:`gpt.loss` in one pass: for a :class:`GPT` whose output layer is a plain ``nn.Linear``, from
    the hidden states and that layer's weight (:func:`~gpt.loss.linear_cross_entropy`, the logits
    never exist in full); for any other model, from its logits (:func:`~gpt.loss.cross_entropy`)."""
    head = getattr(model, "lm_head", None)
    if isinstance(model, GPT) and type(head) is nn.Linear and head.bias is None:
        h = model.hidden_states(x)  # (B, T, C)
        return linear_cross_entropy(h.flatten(0, 1), head.weight, y.flatten())
    logits = model(x)  # (B, T, V)
    return cross_entropy(logits.flatten(0, 1), y.flatten())


def require_compiler() -> None:
    """torch.compile generates C++ (on a CPU) and needs a compiler to build it: a missing one is a
    :class:`~gpt.errors.ConfigError` here, not an error deep inside the first training step."""
    if not any(shutil.which(c) for c in (os.environ.get("CXX") or "g++", "c++", "clang++")):
        raise ConfigError(
            "--compile (TrainConfig.compile) needs a C++ compiler for torch.compile, and none was found "
            "(g++, c++ or clang++, or $CXX); install one (e.g. apt install g++) or train without --compile"
        )


def compile_loss(loss_fn=None):
    """``torch.compile`` of ``loss_fn`` (default :func:`lm_loss`): the forward pass and the loss become
    one optimised graph (and so does their backward pass). Compiling happens in the first call."""
    require_compiler()
    return torch.compile(loss_fn or lm_loss)


def train_step(model, optimizer, x, y, lr: float, cfg: TrainConfig, device, precision: str, loss_fn=None) -> float:
    """One optimisation step on the batch (x, y): set the learning rate, compute the loss (under bf16
    autocast if ``precision`` is "bf16"), backpropagate, clip the gradient norm to ``cfg.grad_clip``,
    take an AdamW step. Returns the loss as a float."""
    for g in optimizer.param_groups:
        g["lr"] = lr
    with autocast(device, precision):
        loss = (loss_fn or lm_loss)(model, x.to(device), y.to(device))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    return loss.item()


@torch.no_grad()
def evaluate(model, ids: torch.Tensor, batch_size: int, n_batches: int, device, precision="fp32", seed: int = 0) -> float:
    """Mean next-token loss over ``n_batches`` fixed random batches of ``ids``."""
    if not _is_int(n_batches) or n_batches < 1:
        raise ConfigError(f"evaluate needs n_batches >= 1 (the mean of no batches is NaN), got {n_batches!r}")
    if not _is_int(batch_size) or batch_size < 1:
        raise ConfigError(f"evaluate needs batch_size >= 1, got {batch_size!r}")
    was = model.training
    model.eval()
    ctx = model.config.context_length
    losses = []
    for i in range(n_batches):
        x, y = get_batch(ids, ctx, batch_size, seed=10_000 + seed, step=i)
        with autocast(device, precision):
            losses.append(lm_loss(model, x.to(device), y.to(device)).item())
    model.train(was)
    return float(np.mean(losses))


# ---------------------------------------------------------------------------------------------
# Model checkpoints (one safetensors file: weights + config)


def _model_bytes(model: GPT, metadata: dict | None = None) -> bytes:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model.config.tie_weights:
        state.pop("lm_head.weight", None)
    meta = {"gpt_config": json.dumps(model.config.to_dict())}
    if getattr(model, "tokenizer_name", None):  # GPT-2's weights: the tokenizer travels with them
        meta["tokenizer"] = model.tokenizer_name
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()})
    return _st_save(state, metadata=meta)


def save_model(model: GPT, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Weights as safetensors (tied weights stored once), the config in the file's metadata.

    The file is written in one step (temporary file, fsync, rename): a crash leaves the old file or
    the new one. An existing file is replaced (commands check their outputs before calling this)."""
    atomic_write_bytes(path, _model_bytes(model, metadata))


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
    from safetensors import safe_open

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


def load_state_dict_strict(model: nn.Module, state: dict, source: str = "state dict") -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise CheckpointError(f"{source}: tensor {k!r} has shape {tuple(v.shape)}, the model expects {tuple(expected[k].shape)}")
    model.load_state_dict(state)


# ---------------------------------------------------------------------------------------------
# Training checkpoints (a folder: weights + optimizer + state.json, written as one unit)

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FORMAT = "gpt-course-checkpoint/2"
MODEL_FILE, OPTIMIZER_FILE = "model.safetensors", "optimizer.safetensors"
_IGNORED_ON_RESUME = {"checkpoint_interval", "compile"}  # TrainConfig fields that do not change what is learned
_RUNTIME_MODEL_FIELDS = {"attn_impl"}  # model config fields that only choose how the same numbers are computed


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    """The folder that holds a run's resumable checkpoint: ``run_dir/checkpoint``."""
    return Path(run_dir) / CHECKPOINT_DIR


def save_training_state(run_dir: str | os.PathLike, model, optimizer, state: dict, metadata: dict | None = None) -> Path:
    """Write the resumable checkpoint ``run_dir/checkpoint/`` (model.safetensors, optimizer.safetensors,
    state.json) as one unit (:func:`gpt.io.checkpoint.write_checkpoint`). Returns the folder."""
    files = {MODEL_FILE: _model_bytes(model, metadata), OPTIMIZER_FILE: _st_save(optimizer_tensors(model, optimizer))}
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
    if state["step"] < 0:
        raise CheckpointError(f"{path}: step {state['step']} is negative")
    for f in (MODEL_FILE, OPTIMIZER_FILE):
        if f not in state["files"]:
            raise CheckpointError(f"{path} records no sha256 for {f}: the checkpoint is damaged and cannot be resumed")
    return state


def _canon(x):
    return json.loads(json.dumps(x))


def _cfg_dict(cfg: TrainConfig) -> dict:
    return _canon(dataclasses.asdict(cfg))


def _data_info(train_t: torch.Tensor, val_t: torch.Tensor) -> dict:
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
        new = _canon(run_info)
        for k in list(saved) + [k for k in new if k not in saved]:
            if saved.get(k) != new.get(k):
                differ(k, saved.get(k), new.get(k))
    if model_config is not None:
        new = _canon(model_config.to_dict())
        saved = state.get("model_config", {})
        for k in list(saved) + [k for k in new if k not in saved]:
            if k not in _RUNTIME_MODEL_FIELDS and saved.get(k) != new.get(k):
                differ(f"model config {k}", saved.get(k), new.get(k))
    if cfg is not None:
        new = _cfg_dict(cfg)
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
        opt = _st_load(opt_bytes)
    except Exception as e:
        raise CheckpointError(f"{ckpt / OPTIMIZER_FILE} is not a readable safetensors file ({e})") from e
    load_optimizer_tensors(model, optimizer, opt, ckpt / OPTIMIZER_FILE, complete=state["step"] > 0)
    return state


# ---------------------------------------------------------------------------------------------
# The training loop


def pretrain(
    model: GPT,
    train_ids: np.ndarray,
    val_ids: np.ndarray,
    cfg: TrainConfig,
    run_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    run_info: dict | None = None,
    overwrite: bool = False,
    parallel=None,
) -> dict:
    """Train ``model`` on next-token prediction; returns the history (losses, lr, tokens, time).

    With ``run_dir``, a resumable checkpoint (``run_dir/checkpoint/``, see the module docstring) is
    written every ``checkpoint_interval`` steps and at the end. ``resume=True`` continues from it and
    reaches the same weights and losses as an uninterrupted run; the checkpoint must come from the
    same run (TrainConfig, model config, token streams and ``run_info``, a JSON-able dict such as
    ``{"books": [...], "tokenizer_fingerprint": ...}`` that is stored with it), else
    :class:`~gpt.errors.CheckpointError` names what differs. Without ``resume``, an existing
    checkpoint in ``run_dir`` is refused (:class:`~gpt.errors.OutputExistsError`) unless ``overwrite``.

    Ctrl-C finishes the step in progress, saves a checkpoint (with ``run_dir``) and raises
    :class:`TrainingInterrupted` (a ``KeyboardInterrupt``). ``stop_after`` ends the loop early after
    that many steps (to test resuming).

    ``parallel``: a :class:`gpt.runtime.distributed.Parallel` (from ``torchrun``, see :mod:`gpt.runtime.distributed`):
    DistributedDataParallel, each rank training on its shard of the same global batch of
    ``cfg.batch_size`` windows; rank 0 alone writes the checkpoints and shows progress.
    """
    if not isinstance(cfg, TrainConfig):
        raise ConfigError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    if stop_after is not None and (not _is_int(stop_after) or stop_after < 1):
        raise ConfigError(f"stop_after must be None or a whole number >= 1, got {stop_after!r}")
    device = parallel.device if parallel else pick_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    if parallel:
        parallel.check_batch_size(cfg.batch_size)
    main = parallel is None or parallel.is_main  # the one process that writes files and prints
    ctx = model.config.context_length
    V = model.config.vocab_size
    train_t = torch.from_numpy(np.asarray(train_ids).astype(np.int64))
    val_t = torch.from_numpy(np.asarray(val_ids).astype(np.int64))
    for name, t in (("training", train_t), ("validation", val_t)):
        if t.dim() != 1:
            raise ConfigError(f"the {name} token stream must be one-dimensional, got shape {tuple(t.shape)}")
        if len(t) < ctx + 2:
            raise ConfigError(f"the {name} token stream has {len(t)} tokens; need more than the context ({ctx}) + 1")
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= V:
            raise ConfigError(
                f"the {name} token stream holds token id {lo if lo < 0 else hi}, but the model's vocabulary has "
                f"{V} tokens (ids 0 to {V - 1}); tokenize with the model's tokenizer"
            )
    if run_info is not None:
        try:
            json.dumps(run_info, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"run_info must be a JSON-able dict ({e})") from e
    run_dir = Path(run_dir) if run_dir else None
    data = _data_info(train_t, val_t) if run_dir else None
    if resume and run_dir is None:
        raise CheckpointError("nothing to resume: no run folder (run_dir) was given")
    if run_dir is not None:
        for stale in run_dir.glob(f".{CHECKPOINT_DIR}.*.tmp") if run_dir.is_dir() and main else []:
            shutil.rmtree(stale, ignore_errors=True)  # left by a process killed while writing a checkpoint
        if resume:
            check_resume(read_training_state(run_dir), cfg=cfg, model_config=model.config, run_info=run_info,
                         data=data, source=str(run_dir))
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

    loss_fn = compile_loss() if cfg.compile and not parallel else None
    model.to(device).train()
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas)
    history = {"step": [], "train_loss": [], "val_step": [], "val_loss": [], "lr": [], "tokens": [], "seconds": []}
    start_step, elapsed = 0, 0.0
    if resume:
        state = load_training_state(run_dir, model, optimizer)
        start_step, history, elapsed = state["step"], state["history"], float(state["seconds"])
    if parallel:  # after the weights are final: DDP starts by copying rank 0's
        loss_fn = parallel.loss_fn(model, compile=cfg.compile)
    ckpt_meta = {"tokenizer_fingerprint": run_info["tokenizer_fingerprint"]} if run_info and "tokenizer_fingerprint" in run_info else None

    def save(step: int, t0: float) -> Path:
        state = {
            "step": step,
            "seconds": time.perf_counter() - t0,
            "history": history,
            "train_config": _cfg_dict(cfg),
            "model_config": _canon(model.config.to_dict()),
            "run": _canon(run_info or {}),
            "data": data,
            "precision": precision,
            "device": str(device),
            "processes": parallel.world_size if parallel else 1,
        }
        path = save_training_state(run_dir, model, optimizer, state, metadata=ckpt_meta) if main else checkpoint_dir(run_dir)
        if parallel:
            parallel.barrier()  # the checkpoint is complete before any rank goes on
        return path

    def stop_requested() -> bool:  # with several processes: Ctrl-C seen by any of them stops all after the same step
        return parallel.any(interrupt.requested) if parallel else interrupt.requested

    bar = None
    if progress and main:
        from .runtime.progress import progress_bar

        bar = progress_bar(total=cfg.max_steps, initial=start_step, desc="pretraining", unit="step")
    t0 = time.perf_counter() - elapsed
    step = saved_step = start_step
    end = cfg.max_steps if stop_after is None else min(cfg.max_steps, start_step + stop_after)
    try:
        with InterruptFlag() as interrupt:
            while step < end and not stop_requested():
                lr = lr_at(step, cfg)
                x, y = get_batch(train_t, ctx, cfg.batch_size, cfg.seed, step)
                if parallel:
                    x, y = parallel.shard(x, y)  # this rank's rows of the global batch
                torch.manual_seed(cfg.seed * 7919 + step + (parallel.rank * 1_000_003 if parallel else 0))  # dropout masks, reproducible per step
                t_step = time.perf_counter()
                loss = train_step(model, optimizer, x, y, lr, cfg, device, precision, loss_fn)
                if parallel:
                    loss = parallel.mean(loss)  # the global batch's loss
                if step == start_step and cfg.compile:
                    history["compile_seconds"] = time.perf_counter() - t_step  # the first compiled step compiles
                step += 1
                history["step"].append(step)
                history["train_loss"].append(loss)
                history["lr"].append(lr)
                history["tokens"].append(step * cfg.batch_size * ctx)
                history["seconds"].append(time.perf_counter() - t0)
                if step % cfg.eval_interval == 0 or step == cfg.max_steps:
                    history["val_step"].append(step)
                    history["val_loss"].append(evaluate(model, val_t, cfg.batch_size, cfg.eval_batches, device, precision, cfg.seed))
                if bar:
                    bar.update(1)
                    post = {"loss": f"{loss:.3f}"}
                    if history["val_loss"]:
                        post["val"] = f"{history['val_loss'][-1]:.3f}"
                    bar.set_postfix(post)
                if run_dir and (step == end or (cfg.checkpoint_interval and step % cfg.checkpoint_interval == 0)):
                    save(step, t0)
                    saved_step = step
            if stop_requested():  # (also when it came during the last step: the user asked to stop)
                ckpt = None
                if run_dir:
                    if step != saved_step:
                        save(step, t0)
                    ckpt = checkpoint_dir(run_dir) if has_checkpoint(run_dir) else None
                history["precision"], history["device"] = precision, str(device)
                raise TrainingInterrupted(step, ckpt, history)
    finally:
        if bar:
            bar.close()
    history["precision"], history["device"] = precision, str(device)
    history["processes"] = parallel.world_size if parallel else 1
    return history
