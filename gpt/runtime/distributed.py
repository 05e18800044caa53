"""Pretraining on several processes: DistributedDataParallel, one process per GPU (or per CPU share).

Started by ``torchrun``, which runs the same command N times and tells each copy its place in the
environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``)::

    torchrun --nproc_per_node 4 -m gpt pretrain --steps 2000 --batch-size 64 --out runs/ddp

:func:`from_environment` reads those variables and joins the process group (``nccl`` on CUDA GPUs,
``gloo`` on CPUs); without ``torchrun`` it returns ``None`` and everything runs in one process as
before. :func:`gpt.train.pretrain` takes the resulting :class:`Parallel` (``parallel=``) and then:

* **Each rank reads its own shard of every batch.** The global batch of ``batch_size`` windows is the
  one a single process would draw at that step (:func:`gpt.train.get_batch`, a pure function of
  seed and step); rank ``r`` of ``N`` trains on rows ``[r·B/N, (r+1)·B/N)``. ``batch_size`` is the
  global batch and must be divisible by N.
* **Gradients are averaged** across ranks by DDP during ``backward``, so every rank takes the same
  AdamW step, and the weights stay equal everywhere. The mean of equal-sized shards' mean losses is
  the global batch's mean loss: N processes compute what one process computes on the whole batch
  (up to the order of floating-point additions; tested to 1e-5 in fp32).
* **Rank 0 alone writes** checkpoints, the model, the card and the progress bar; the other ranks
  compute the same (averaged) losses and evaluations, and wait for rank 0 where it writes.
* **Resume** reads the checkpoint on every rank; the batches of step ``s`` do not depend on N, so a
  run can also be resumed on another number of processes.
* **Ctrl-C** on any rank stops all of them after the same step (the flag is reduced across ranks
  every step), and rank 0 saves the checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..errors import ConfigError


__all__ = ["Parallel", "from_environment", "shutdown"]


class _LossOf(nn.Module):
    """The GPT and its next-token loss as one module, so that DDP sees the whole forward pass (its
    gradient hooks fire for the parameters the loss used) while the loss (:func:`gpt.train.lm_loss`)
    keeps computing the output layer and the loss in one pass."""

    def __init__(self, gpt: nn.Module, loss):
        super().__init__()
        self.gpt, self.loss = gpt, loss

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(self.gpt, x, y)


@dataclass(frozen=True)
class Parallel:
    """This process's place in a group of ``world_size`` processes (the process group already joined)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size % self.world_size:
            raise ConfigError(
                f"the batch size ({batch_size}) is the global batch and must be divisible by the number of processes "
                f"({self.world_size}); use --batch-size {max(1, batch_size // self.world_size) * self.world_size} or another --nproc_per_node"
            )

    def shard(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's rows of the global batch (B, T) -> (B / N, T)."""
        n = x.size(0) // self.world_size
        rows = slice(self.rank * n, (self.rank + 1) * n)
        return x[rows], y[rows]

    def loss_fn(self, model: nn.Module, loss, compile: bool = False):
        """``loss`` (``(model, x, y) -> loss``, such as :func:`gpt.train.lm_loss`) for :func:`gpt.train.train_step`,
        run through DistributedDataParallel (gradients averaged across ranks in ``backward``); with
        ``compile``, torch.compile'd (the caller has checked for a compiler). Call it after the weights
        are final on every rank (after a resume): DDP starts by copying rank 0's weights."""

        ids = [self.device.index or 0] if self.device.type == "cuda" else None
        ddp = DDP(_LossOf(model, loss), device_ids=ids)
        if compile:
            ddp = torch.compile(ddp)
        return lambda _model, x, y: ddp(x, y)

    def mean(self, value: float) -> float:
        """The mean of ``value`` over all ranks (every rank gets it)."""
        t = torch.tensor([float(value)], dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item()) / self.world_size

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is True on any rank (Ctrl-C seen by one process stops all)."""
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self._comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def barrier(self) -> None:
        """Wait until every rank is here (e.g. until rank 0 has written a checkpoint)."""
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index or 0])
        else:
            dist.barrier()

    @property
    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError as e:
        raise ConfigError(f"the environment variable {name}={value!r} is not a whole number (it is set by torchrun)") from e


def from_environment(device: str = "auto") -> Parallel | None:
    """Join the process group ``torchrun`` describes in the environment, or ``None`` for a single process.

    ``device``: ``"auto"`` (CUDA GPU ``LOCAL_RANK`` when there are GPUs, else the CPU), ``"cpu"`` or
    ``"cuda"``. CUDA uses the ``nccl`` backend, the CPU ``gloo``. More processes on one machine than
    GPUs is a :class:`~gpt.errors.ConfigError`."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return None
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"with torchrun, --device is 'auto', 'cpu' or 'cuda' (each process takes GPU LOCAL_RANK), got {device!r}")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: this machine (or this torch build) has no CUDA GPU; use --device cpu")
        if local >= torch.cuda.device_count():
            raise ConfigError(
                f"process LOCAL_RANK={local} has no GPU: this machine has {torch.cuda.device_count()}; "
                "use --nproc_per_node at most the number of GPUs"
            )
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    return Parallel(rank=rank, world_size=world, local_rank=local, device=dev)


def shutdown() -> None:
    """Leave the process group (at the end of a ``torchrun`` command)."""
    if dist.is_initialized():
        dist.destroy_process_group()
