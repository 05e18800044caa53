"""gpt.runtime.distributed: two gloo processes on the CPU train exactly what one process trains on the same global batch."""

import dataclasses
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from gpt.errors import ConfigError
from gpt.model import GPT, GPTConfig
from gpt.io.weights import load_model
from gpt.train import pretrain
from gpt.train_config import TrainConfig

TINY = dict(vocab_size=256, context_length=16, n_layer=2, n_head=2, n_embd=32)
STEPS, BATCH = 6, 8


def streams():
    """A learnable stream: a fixed random sequence of 97 tokens, repeated."""
    pattern = np.random.default_rng(0).integers(0, 256, 97)
    return np.tile(pattern, 40), np.tile(pattern, 6)[5:]


def config(**kw) -> TrainConfig:
    return TrainConfig(**{**dict(max_steps=STEPS, batch_size=BATCH, lr=3e-3, min_lr=3e-4, warmup_steps=2, eval_interval=3, eval_batches=2,
                                 precision="fp32", device="cpu", seed=7), **kw})


def fresh_model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**TINY))


def _worker(rank: int, world: int, port: int, out: str) -> None:
    """One of two processes: a run stopped after 3 steps, then resumed to the end, in out/run."""
    from gpt.runtime.distributed import from_environment, shutdown

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    parallel = from_environment("cpu")
    train, val = streams()
    try:
        first = pretrain(fresh_model(), train, val, dataclasses.replace(config(), stop_after=3), run_dir=f"{out}/run", progress=False,
                         parallel=parallel)
        model = fresh_model()
        hist = pretrain(model, train, val, config(), run_dir=f"{out}/run", resume=True, progress=False, parallel=parallel)
        torch.save({"first": first, "hist": hist, "state": model.state_dict()}, f"{out}/rank{rank}.pt")
    finally:
        shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    return out


def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(two_processes):
    train, val = streams()
    one = fresh_model()
    hist = pretrain(one, train, val, config(), progress=False)
    rank0 = torch.load(two_processes / "rank0.pt")
    rank1 = torch.load(two_processes / "rank1.pt")
    assert rank0["hist"]["step"] == hist["step"] == list(range(1, STEPS + 1))
    np.testing.assert_allclose(rank0["hist"]["train_loss"], hist["train_loss"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(rank0["hist"]["val_loss"], hist["val_loss"], rtol=0, atol=1e-5)
    assert rank0["hist"]["train_loss"][-1] < rank0["hist"]["train_loss"][0] - 0.1  # it learned: the equality is not trivial
    for k, w in one.state_dict().items():
        assert torch.allclose(rank0["state"][k], w, rtol=0, atol=1e-5), k
        assert torch.equal(rank0["state"][k], rank1["state"][k]), k  # every rank holds the same weights
    assert rank0["hist"]["train_loss"] == rank1["hist"]["train_loss"]


def test_rank0_wrote_a_checkpoint_that_resumes_and_loads(two_processes):
    from gpt.io.resume import read_training_state

    run = two_processes / "run"
    state = read_training_state(run)
    assert state["step"] == STEPS and state["processes"] == 2
    rank0 = torch.load(two_processes / "rank0.pt")
    assert rank0["first"]["step"] == [1, 2, 3]  # stopped after 3 steps; the resumed run did 4..6
    saved = load_model(run / "checkpoint" / "model.safetensors")
    assert all(torch.equal(saved.state_dict()[k], v) for k, v in rank0["state"].items())
    assert not list(run.glob(".checkpoint*"))  # no temporary folder left behind


def test_global_batch_must_divide_among_processes():
    from gpt.runtime.distributed import Parallel

    p = Parallel(rank=1, world_size=3, local_rank=1, device=torch.device("cpu"))
    with pytest.raises(ConfigError, match="divisible by the number of processes"):
        p.check_batch_size(8)
    x = torch.arange(12).view(6, 2)
    assert p.shard(x, x + 1)[0].tolist() == [[4, 5], [6, 7]]


def test_single_process_without_torchrun(monkeypatch):
    from gpt.runtime.distributed import from_environment

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert from_environment() is None
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE"):
        from_environment()


def test_torchrun_pretrain_command_equals_one_process(mirror_dir, tmp_path, monkeypatch):
    """`torchrun --nproc_per_node 2 -m gpt pretrain ...` (gloo on the CPU): rank 0 writes the model and
    its card, whose losses are those of the same command in one process."""
    import json
    import subprocess
    import sys

    from gpt.cli import main

    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    monkeypatch.setenv("GPT_DATA_DIR", str(tmp_path / "data"))
    args = ["pretrain", "--preset", "course-tiny", "--steps", "8", "--batch-size", "4", "--books", "pg1342", "--device", "cpu",
            "--precision", "fp32", "--eval-interval", "4", "--heldout-batches", "2", "--samples", "She"]
    assert main(args + ["--out", str(tmp_path / "one")]) == 0
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]
    done = subprocess.run(torchrun + ["-m", "gpt", *args, "--out", str(tmp_path / "two")], capture_output=True, text=True, timeout=1800)  # a hang guard only
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("held-out loss") == 1  # rank 0 alone prints (and writes)
    one, two = (json.loads((tmp_path / d / "model_card.json").read_text()) for d in ("one", "two"))
    assert two["processes"] == 2 and one["processes"] == 1
    for key in ("final_train_loss", "final_val_loss", "heldout_loss_fp32"):
        assert abs(one[key] - two[key]) < 1e-5, key
