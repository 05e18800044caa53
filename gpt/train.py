"""Pretraining: the loop. AdamW, warmup + cosine schedule, clipping, evaluation, bf16 autocast.

:func:`pretrain` is the loop; the steps it repeats are :func:`get_batch`, :func:`lr_at` and
:func:`train_step`, and :func:`evaluate` measures the held-out loss. What a run is made from is
:class:`~gpt.train_config.TrainConfig`. With a run folder, the loop writes checkpoints that resume
exactly (:mod:`gpt.io.resume`: the folder's layout and the checks); Ctrl-C finishes the current
step, saves a checkpoint, and raises :class:`TrainingInterrupted`. Model files
(``save_model``, ``read_checkpoint``, ``load_model``) are :mod:`gpt.io.weights`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .errors import CheckpointError, ConfigError
from .io.checkpoint import InterruptFlag, TrainingInterrupted
from .io.resume import checkpoint_dir, data_info, has_checkpoint, load_training_state, prepare_run_dir, run_record, save_training_state
from .model import GPT, count_parameters
from .runtime.device import autocast, pick_device, resolve_precision
from .runtime.fused_loss import cross_entropy, linear_cross_entropy, prepare_compile
from .runtime.memory import check_training_memory
from .runtime.progress import progress_bar
from .runtime.tools import require_compiler
from .checks import check_whole_number
from .train_config import TrainConfig


__all__ = ["make_optimizer", "lr_at", "get_batch", "lm_loss", "train_step", "compile_loss", "evaluate", "pretrain"]


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
    :mod:`gpt.runtime.fused_loss` in one pass: for a :class:`GPT` whose output layer is a plain ``nn.Linear``, from
    the hidden states and that layer's weight (:func:`~gpt.runtime.fused_loss.linear_cross_entropy`, the logits
    never exist in full); for any other model, from its logits (:func:`~gpt.runtime.fused_loss.cross_entropy`)."""
    head = getattr(model, "lm_head", None)
    if isinstance(model, GPT) and type(head) is nn.Linear and head.bias is None:
        h = model.hidden_states(x)  # (B, T, C)
        return linear_cross_entropy(h.flatten(0, 1), head.weight, y.flatten())
    logits = model(x)  # (B, T, V)
    return cross_entropy(logits.flatten(0, 1), y.flatten())


def compile_loss(loss_fn=None):
    """``torch.compile`` of ``loss_fn`` (default :func:`lm_loss`): the forward pass and the loss become
    one optimised graph (and so does their backward pass). Compiling happens in the first call."""
    require_compiler()
    prepare_compile()
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
    check_whole_number("n_batches (evaluate takes the mean over them)", n_batches, minimum=1)
    check_whole_number("batch_size", batch_size, minimum=1)
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
# The training loop


def token_streams(model: GPT, train_ids, val_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """The training and validation token streams as int64 tensors, checked against the model: one
    dimension, longer than its context, every id inside its vocabulary."""
    ctx, V = model.config.context_length, model.config.vocab_size
    streams = []
    for name, ids in (("training", train_ids), ("validation", val_ids)):
        t = torch.from_numpy(np.asarray(ids).astype(np.int64))
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
        streams.append(t)
    return streams[0], streams[1]


def _check_options(cfg, run_info, run_dir, resume) -> None:
    if not isinstance(cfg, TrainConfig):
        raise ConfigError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    if run_info is not None:
        try:
            json.dumps(run_info, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"run_info must be a JSON-able dict ({e})") from e
    if resume and not run_dir:
        raise CheckpointError("nothing to resume: no run folder (run_dir) was given")


@dataclass
class _Steps:
    """What every step of a run uses: the model and its optimizer, the data, and where and how it computes."""

    model: GPT
    optimizer: torch.optim.Optimizer
    cfg: TrainConfig
    train_t: torch.Tensor
    val_t: torch.Tensor
    device: torch.device
    precision: str
    parallel: object = None
    loss_fn: object = None

    def train(self, step: int) -> tuple[float, float]:
        """One optimisation step on step ``step``'s batch; returns (loss, learning rate)."""
        cfg, parallel = self.cfg, self.parallel
        lr = lr_at(step, cfg)
        x, y = get_batch(self.train_t, self.model.config.context_length, cfg.batch_size, cfg.seed, step)
        if parallel:
            x, y = parallel.shard(x, y)  # this rank's rows of the global batch
        torch.manual_seed(cfg.seed * 7919 + step + (parallel.rank * 1_000_003 if parallel else 0))  # dropout masks, reproducible per step
        loss = train_step(self.model, self.optimizer, x, y, lr, cfg, self.device, self.precision, self.loss_fn)
        return (parallel.mean(loss) if parallel else loss), lr  # (the global batch's loss)

    def validate(self) -> float:
        cfg = self.cfg
        return evaluate(self.model, self.val_t, cfg.batch_size, cfg.eval_batches, self.device, self.precision, cfg.seed)


def _setup(model, train_ids, val_ids, cfg, run_dir, resume, overwrite, run_info, parallel):
    """Where and how a run computes, its token streams, and its run folder, all checked before the first step."""
    device = parallel.device if parallel else pick_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    if parallel:
        parallel.check_batch_size(cfg.batch_size)
    check_training_memory(model.config, count_parameters(model), cfg.batch_size, device, processes=parallel.world_size if parallel else 1)
    if cfg.compile:
        require_compiler()
    train_t, val_t = token_streams(model, train_ids, val_ids)
    run_dir = Path(run_dir) if run_dir else None
    data = data_info(train_t, val_t) if run_dir else None
    if run_dir is not None:
        prepare_run_dir(run_dir, resume=resume, overwrite=overwrite, parallel=parallel, cfg=cfg, model_config=model.config,
                        run_info=run_info, data=data)
    return device, precision, train_t, val_t, run_dir, data


def _new_history() -> dict:
    return {"step": [], "train_loss": [], "val_step": [], "val_loss": [], "lr": [], "tokens": [], "seconds": []}


def _resumed(run_dir: Path, model: GPT, optimizer) -> tuple[int, dict, float]:
    """(step, history, seconds) of the checkpoint in ``run_dir``, whose weights and optimizer state are loaded."""
    state = load_training_state(run_dir, model, optimizer)
    return state["step"], state["history"], float(state["seconds"])


def _record_step(history: dict, step: int, loss: float, lr: float, tokens: int, seconds: float) -> None:
    for key, value in (("step", step), ("train_loss", loss), ("lr", lr), ("tokens", tokens), ("seconds", seconds)):
        history[key].append(value)


def _show(bar, loss: float, history: dict) -> None:
    bar.update(1)
    post = {"loss": f"{loss:.3f}"}
    if history["val_loss"]:
        post["val"] = f"{history['val_loss'][-1]:.3f}"
    bar.set_postfix(post)


def pretrain(
    model: GPT,
    train_ids: np.ndarray,
    val_ids: np.ndarray,
    cfg: TrainConfig,
    run_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    run_info: dict | None = None,
    overwrite: bool = False,
    parallel=None,
) -> dict:
    """Train ``model`` on next-token prediction; returns the history (losses, lr, tokens, time).

    With ``run_dir``, a resumable checkpoint (``run_dir/checkpoint/``, :mod:`gpt.io.resume`) is written
    every ``checkpoint_interval`` steps and at the end; ``resume=True`` continues from it, to the same
    weights and losses as an uninterrupted run, if it comes from the same run (TrainConfig, model
    config, token streams, and ``run_info``: a JSON-able dict such as ``{"books": [...]}`` stored with
    it). Without ``resume`` an existing checkpoint is refused unless ``overwrite``. Ctrl-C finishes the
    step, saves a checkpoint and raises :class:`TrainingInterrupted`; ``cfg.stop_after`` ends the loop
    early after that many steps (to test resuming). ``parallel``: a :class:`gpt.runtime.distributed.Parallel`
    (under ``torchrun``): each rank trains on its shard of the global batch; rank 0 alone writes and shows progress.
    """
    _check_options(cfg, run_info, run_dir, resume)
    device, precision, train_t, val_t, run_dir, data = _setup(model, train_ids, val_ids, cfg, run_dir, resume, overwrite, run_info, parallel)
    main = parallel is None or parallel.is_main  # the one process that writes files and prints
    ctx = model.config.context_length
    model.to(device).train()
    steps = _Steps(model, make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas), cfg, train_t, val_t, device, precision, parallel,
                   compile_loss() if cfg.compile and not parallel else None)
    start_step, history, elapsed = _resumed(run_dir, model, steps.optimizer) if resume else (0, _new_history(), 0.0)
    if parallel:  # after the weights are final: DDP starts by copying rank 0's
        if cfg.compile:
            prepare_compile()
        steps.loss_fn = parallel.loss_fn(model, lm_loss, compile=cfg.compile)
    record = run_record(cfg, model.config, run_info, data, precision=precision, device=str(device),
                        processes=parallel.world_size if parallel else 1)
    ckpt_meta = {"tokenizer_fingerprint": run_info["tokenizer_fingerprint"]} if run_info and "tokenizer_fingerprint" in run_info else None

    def save(step: int) -> None:
        state = {"step": step, "seconds": time.perf_counter() - t0, "history": history, **record}
        if main:
            save_training_state(run_dir, model, steps.optimizer, state, metadata=ckpt_meta)
        if parallel:
            parallel.barrier()  # the checkpoint is complete before any rank goes on

    def stop_requested() -> bool:  # with several processes: Ctrl-C seen by any of them stops all after the same step
        return parallel.any(interrupt.requested) if parallel else interrupt.requested

    bar = progress_bar(total=cfg.max_steps, initial=start_step, desc="pretraining", unit="step") if progress and main else None
    t0 = time.perf_counter() - elapsed
    step = saved_step = start_step
    end = cfg.max_steps if cfg.stop_after is None else min(cfg.max_steps, start_step + cfg.stop_after)
    try:
        with InterruptFlag() as interrupt:
            while step < end and not stop_requested():
                t_step = time.perf_counter()
                loss, lr = steps.train(step)
                if step == start_step and cfg.compile:
                    history["compile_seconds"] = time.perf_counter() - t_step  # the first compiled step compiles
                step += 1
                _record_step(history, step, loss, lr, step * cfg.batch_size * ctx, time.perf_counter() - t0)
                if step % cfg.eval_interval == 0 or step == cfg.max_steps:
                    history["val_step"].append(step)
                    history["val_loss"].append(steps.validate())
                if bar:
                    _show(bar, loss, history)
                if run_dir and (step == end or (cfg.checkpoint_interval and step % cfg.checkpoint_interval == 0)):
                    save(step)
                    saved_step = step
            if stop_requested():  # (also when it came during the last step: the user asked to stop)
                if run_dir and step != saved_step:
                    save(step)
                history["precision"], history["device"] = precision, str(device)
                raise TrainingInterrupted(step, checkpoint_dir(run_dir) if run_dir and has_checkpoint(run_dir) else None, history)
    finally:
        if bar:
            bar.close()
    history["precision"], history["device"], history["processes"] = precision, str(device), record["processes"]
    return history
