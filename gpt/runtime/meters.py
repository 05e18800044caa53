"""Meters for what a training run costs: peak memory, saved activations, optimizer state.

* :class:`PeakMemory` -- the peak memory of a block of code (CUDA: allocated tensors; CPU: the
  process's resident memory, sampled).
* :class:`SavedActivations` -- bytes of the tensors autograd keeps for the backward pass (measured on
  every forward, or only on the batches that set a new record: :meth:`SavedActivations.track_if_larger`).
* :func:`optimizer_state_bytes` -- bytes of the optimizer's state tensors (AdamW: two per parameter).
"""

from __future__ import annotations

import contextlib
import os
import threading

import torch
import torch.nn as nn

def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Peak memory of the code inside ``with PeakMemory(device) as pm: ...``; read ``pm.peak_bytes``.

    * CUDA: ``torch.cuda.max_memory_allocated`` (reset on entry) minus the memory allocated on
      entry: the tensors the run allocated on top of what was already there. ``method="cuda_max_allocated"``.
    * CPU on Linux: the process's resident set size (RSS), read from ``/proc/self/statm`` every
      ``interval`` seconds by a background thread; the peak minus the RSS on entry.
      ``method="rss_sampled"``. It counts everything the process touched (the allocator's caches
      too) and can miss a spike shorter than the interval; in a process that already ran a bigger
      job it can read low, because freed memory is reused. The command line runs each run in a
      fresh process for that reason.
    * elsewhere: ``method="unavailable"``, ``peak_bytes=None``.
    """

    def __init__(self, device, interval: float = 0.005):
        self.device = torch.device(device)
        self.interval = interval
        self.peak_bytes: int | None = None
        self.method = "unavailable"

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "cuda_max_allocated"
        elif _rss_bytes() is not None:
            self._start = _rss_bytes()
            self._peak = self._start
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
            self.method = "rss_sampled"
        return self

    def _sample(self):
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss_bytes() or 0)
            self._stop.wait(self.interval)

    def __exit__(self, *exc):
        if self.method == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = int(torch.cuda.max_memory_allocated(self.device) - self._start)
        elif self.method == "rss_sampled":
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _rss_bytes() or 0)
            self.peak_bytes = int(self._peak - self._start)
        return False


class SavedActivations:
    """Bytes of the tensors autograd saves for the backward pass (the activations), per forward.

    Used as ``with meter.track(): loss = ...`` around each forward; ``meter.peak_bytes`` is the
    largest total over the tracked forwards. Storages shared by several saved tensors count once,
    and the model's parameters (also saved, e.g. for the input gradient of a linear layer) do not count.
    """

    def __init__(self, model: nn.Module):
        self._param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.peak_bytes = 0
        self.largest = (0, 0)  # (length, tokens) of the largest batch seen by track_if_larger

    def track_if_larger(self, x: torch.Tensor):
        """:meth:`track` for a batch ``x`` (B, T) longer, or with more tokens, than every batch before it; else nothing.

        Saved activations grow with the batch's length and size: measuring only the batches that set a
        new record gives the same peak without paying the meter's cost on every step."""
        shape = (x.shape[1], x.numel())
        record = shape[0] > self.largest[0] or shape[1] > self.largest[1]
        self.largest = max(self.largest[0], shape[0]), max(self.largest[1], shape[1])
        return self.track() if record else contextlib.nullcontext()

    def track(self):
        seen: dict[int, int] = {}
        meter = self

        def pack(t):
            try:
                s = t.untyped_storage()
                key = s.data_ptr()
                if key not in meter._param_storages and key not in seen:
                    seen[key] = s.nbytes()
                    meter.peak_bytes = max(meter.peak_bytes, sum(seen.values()))
            except (RuntimeError, NotImplementedError):
                pass
            return t

        return torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in the optimizer's state tensors (AdamW: ``exp_avg`` and ``exp_avg_sq`` per trainable parameter)."""
    return int(sum(v.nbytes for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)))
