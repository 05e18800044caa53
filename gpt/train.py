"""Pretraining: AdamW, warmup + cosine schedule, clipping, evaluation, bf16 autocast, checkpoints that resume exactly."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .model import GPT, GPTConfig


@dataclass
class TrainConfig:
    max_steps: int = 1000
    batch_size: int = 16
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_interval: int = 100
    eval_batches: int = 20
    precision: str = "auto"  # "auto" (bf16 where fast), "bf16" or "fp32"
    device: str = "auto"
    seed: int = 1234
    checkpoint_interval: int = 0  # 0: only at the end (when a checkpoint dir is given)

    def __post_init__(self):
        if self.max_steps <= 0 or self.batch_size <= 0:
            raise ValueError("max_steps and batch_size must be positive")
        if not 0 <= self.warmup_steps <= self.max_steps:
            raise ValueError("warmup_steps must be between 0 and max_steps")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")
        self.betas = tuple(self.betas)


# ---------------------------------------------------------------------------------------------
# Devices and precision


def pick_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with native bf16 matrix instructions (AVX-512 BF16 or AMX), where bf16 autocast pays off."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and _cpu_flags() & {"avx512_bf16", "amx_bf16"} != set()
    except Exception:
        return False


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str):
    """A context that runs matmuls in bf16 (weights stay fp32), or does nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


# ---------------------------------------------------------------------------------------------
# Optimizer and schedule


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.95)) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (linear and embedding weights); biases and norms get none."""
    decay, no_decay = [], []
    for p in model.parameters():  # a tied weight appears once
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas)


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
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, len(ids) - context_length - 1, (batch_size,), generator=g)
    windows = torch.stack([ids[s : s + context_length + 1] for s in starts.tolist()])
    return windows[:, :-1], windows[:, 1:]


def lm_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())


@torch.no_grad()
def evaluate(model, ids: torch.Tensor, batch_size: int, n_batches: int, device, precision="fp32", seed: int = 0) -> float:
    """Mean next-token loss over ``n_batches`` fixed random batches of ``ids``."""
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
# Checkpoints


class CheckpointError(RuntimeError):
    pass


def save_model(model: GPT, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Weights as safetensors (tied weights stored once), the config in the file's metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model.config.tie_weights:
        state.pop("lm_head.weight", None)
    meta = {"gpt_config": json.dumps(model.config.to_dict())}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()})
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike) -> tuple[GPTConfig, dict, dict]:
    """(config, state dict, metadata) of a safetensors checkpoint written by :func:`save_model`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        state = load_file(str(path))
    except Exception as e:  # safetensors raises several types for a damaged file
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({e})") from e
    if "gpt_config" not in meta:
        raise CheckpointError(f"{path} has no 'gpt_config' metadata: not a checkpoint of this package")
    config = GPTConfig.from_dict(json.loads(meta.pop("gpt_config")))
    return config, state, meta


def load_model(path: str | os.PathLike, device="cpu", **config_overrides) -> GPT:
    """Build a :class:`GPT` from a checkpoint; any missing, extra or mis-shaped tensor is an error naming it."""
    config, state, _ = read_checkpoint(path)
    if config_overrides:
        config = dataclasses.replace(config, **config_overrides)
    model = GPT(config)
    if config.tie_weights:
        state.setdefault("lm_head.weight", state.get("tok_emb.weight"))
    load_state_dict_strict(model, state, source=str(path))
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


def save_training_state(run_dir: Path, model, optimizer, state: dict) -> None:
    """A resumable checkpoint: model.safetensors, optimizer.safetensors and state.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, run_dir / "model.safetensors")
    names = {id(p): n for n, p in model.named_parameters()}
    opt_tensors, opt_meta = {}, []
    for group in optimizer.param_groups:
        for p in group["params"]:
            n = names[id(p)]
            for key, val in optimizer.state.get(p, {}).items():
                opt_tensors[f"{n}::{key}"] = val.detach().contiguous().cpu().reshape(val.shape)
            opt_meta.append(n)
    tmp = run_dir / "optimizer.safetensors.tmp"
    save_file(opt_tensors, str(tmp))
    os.replace(tmp, run_dir / "optimizer.safetensors")
    tmp = run_dir / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, run_dir / "state.json")


def load_training_state(run_dir: Path, model, optimizer) -> dict:
    state = json.loads((run_dir / "state.json").read_text())
    _, weights, _ = read_checkpoint(run_dir / "model.safetensors")
    if model.config.tie_weights:
        weights.setdefault("lm_head.weight", weights["tok_emb.weight"])
    load_state_dict_strict(model, weights, source=str(run_dir / "model.safetensors"))
    opt = load_file(str(run_dir / "optimizer.safetensors"))
    params = dict(model.named_parameters())
    for key, val in opt.items():
        name, field = key.split("::")
        optimizer.state[params[name]][field] = val.to(params[name].device)
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
) -> dict:
    """Train ``model`` on next-token prediction; returns the history (losses, lr, tokens, time).

    With ``run_dir``, a resumable checkpoint is written every ``checkpoint_interval`` steps and at
    the end; ``resume=True`` continues from it and reaches the same weights and losses as an
    uninterrupted run. ``stop_after`` ends the loop early after that many steps (to test resuming).
    """
    device = pick_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    model.to(device).train()
    ctx = model.config.context_length
    train_t = torch.from_numpy(np.asarray(train_ids).astype(np.int64))
    val_t = torch.from_numpy(np.asarray(val_ids).astype(np.int64))
    for name, t in (("training", train_t), ("validation", val_t)):
        if len(t) < ctx + 2:
            raise ValueError(f"the {name} token stream has {len(t)} tokens; need more than the context ({ctx})")
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas)
    run_dir = Path(run_dir) if run_dir else None
    history = {"step": [], "train_loss": [], "val_step": [], "val_loss": [], "lr": [], "tokens": [], "seconds": []}
    start_step, elapsed = 0, 0.0
    if resume:
        if run_dir is None or not (run_dir / "state.json").exists():
            raise CheckpointError(f"nothing to resume in {run_dir}")
        state = load_training_state(run_dir, model, optimizer)
        if state["train_config"] != _cfg_dict(cfg):
            raise CheckpointError("the checkpoint was made with a different TrainConfig; resume with the same one")
        start_step, history, elapsed = state["step"], state["history"], state["seconds"]

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_steps, initial=start_step, desc="pretraining", unit="step")
    t0 = time.perf_counter() - elapsed
    step = start_step
    end = cfg.max_steps if stop_after is None else min(cfg.max_steps, start_step + stop_after)
    while step < end:
        lr = lr_at(step, cfg)
        for g in optimizer.param_groups:
            g["lr"] = lr
        x, y = get_batch(train_t, ctx, cfg.batch_size, cfg.seed, step)
        torch.manual_seed(cfg.seed * 7919 + step)  # dropout masks, reproducible per step
        with autocast(device, precision):
            loss = lm_loss(model, x.to(device), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        step += 1
        history["step"].append(step)
        history["train_loss"].append(loss.item())
        history["lr"].append(lr)
        history["tokens"].append(step * cfg.batch_size * ctx)
        history["seconds"].append(time.perf_counter() - t0)
        if step % cfg.eval_interval == 0 or step == cfg.max_steps:
            history["val_step"].append(step)
            history["val_loss"].append(evaluate(model, val_t, cfg.batch_size, cfg.eval_batches, device, precision, cfg.seed))
        if bar:
            bar.update(1)
            post = {"loss": f"{loss.item():.3f}"}
            if history["val_loss"]:
                post["val"] = f"{history['val_loss'][-1]:.3f}"
            bar.set_postfix(post)
        if run_dir and (step == end or (cfg.checkpoint_interval and step % cfg.checkpoint_interval == 0)):
            state = {
                "step": step,
                "seconds": time.perf_counter() - t0,
                "history": history,
                "train_config": _cfg_dict(cfg),
                "precision": precision,
                "device": str(device),
            }
            save_training_state(run_dir, model, optimizer, state)
    if bar:
        bar.close()
    history["precision"], history["device"] = precision, str(device)
    return history


def _cfg_dict(cfg: TrainConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["betas"] = list(d["betas"])
    return d
