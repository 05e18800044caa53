"""Runs that cannot clobber each other, with real processes: ``pretrain`` holds the lock of its
``--out`` (a second writer is refused, naming the first; a killed one's lock is taken over), and
``--overwrite`` keeps the old run until the new one is complete, so a replacement killed half-way
(SIGKILL or SIGTERM) leaves the old model, card and checkpoint as they were, and resumes."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from gpt.cli import main
from gpt.io.lock import lock_holder, lock_path
from gpt.io.resume import read_training_state

BOOK = "pg35"
TINY = ["--preset", "course-tiny", "--books", BOOK, "--batch-size", "2", "--heldout-batches", "1", "--precision", "fp32",
        "--device", "cpu", "--eval-interval", "1000", "--samples"]
LONG = 100_000  # steps: a run that is still running when it is stopped
HANG = 600  # seconds: only guards against a hang

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def pretrain(out, steps, *extra):
    return ["pretrain", *TINY, "--steps", str(steps), "--checkpoint-interval", "5", "--out", str(out), *extra]


@pytest.fixture
def env(mirror_dir, tmp_path_factory, monkeypatch, tmp_path):
    cache = tmp_path_factory.getbasetemp() / "runs-data"  # the book is tokenized once for this file's tests
    cache.mkdir(exist_ok=True)
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    monkeypatch.setenv("GPT_DATA_DIR", str(cache))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def start(env, argv):
    penv = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                                                                                  os.environ.get("PYTHONPATH", "")])}
    err = open(env / f"err-{time.monotonic_ns()}.txt", "w+")
    p = subprocess.Popen([sys.executable, "-m", "gpt", *argv], cwd=env, env=penv, stdout=subprocess.DEVNULL, stderr=err)
    p.err = err
    return p


def wait_for(path, p):
    deadline = time.monotonic() + HANG
    while not path.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    p.err.seek(0)
    assert p.poll() is None, p.err.read()[-2000:]


def run(capsys, argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def snapshot(folder):
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


def test_a_second_pretrain_on_the_same_out_is_refused_naming_the_first(env, capsys):
    p = start(env, pretrain("run", LONG))
    try:
        wait_for(env / "run" / "checkpoint" / "state.json", p)
        rc, _, err = run(capsys, pretrain("run", 6, "--overwrite"))
        assert rc == 2, err
        assert f"error: --out run is being written by pid {p.pid} on " in err
        assert "started " in err and "python -m gpt pretrain --preset course-tiny" in err
        assert "wait until it has finished, or choose another output" in err and "Traceback" not in err
        rc, _, err = run(capsys, pretrain("run", LONG, "--resume"))  # resuming a running run: refused too
        assert rc == 2 and f"pid {p.pid}" in err
    finally:
        p.kill()
        p.wait()
    # killed holding the lock: the next run takes it over, with a note
    assert lock_holder(env / "run")["pid"] == p.pid
    rc, _, err = run(capsys, pretrain("run", LONG, "--resume", "--steps", "7"))  # takes the lock, then refuses the other --steps
    assert f"note: run was locked by pid {p.pid}" in err and "no longer running; taking the lock over" in err
    assert rc == 2 and f"TrainConfig.max_steps differs: the checkpoint has {LONG}, this run has 7" in err
    assert not lock_path(env / "run").exists()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_overwrite_killed_half_way_leaves_the_old_run_intact(env, capsys, sig):
    rc, _, err = run(capsys, pretrain("run", 6))
    assert rc == 0, err
    before = snapshot(env / "run")
    assert {"model.safetensors", "model_card.json", "MODEL_CARD.md", "checkpoint/state.json"} <= set(before)
    argv = pretrain("run", LONG, "--overwrite")
    p = start(env, argv)
    try:
        wait_for(env / ".run.overwrite" / "checkpoint" / "state.json", p)
        p.send_signal(sig)
        p.wait(timeout=HANG)
    finally:
        p.kill()
        p.wait()
    assert snapshot(env / "run") == before  # the old model, card and checkpoint, byte for byte
    # the interrupted replacement resumes (--overwrite --resume) and replaces the old run only once complete
    step = read_training_state(env / ".run.overwrite")["step"]
    assert 5 <= step < LONG
    rc, out, err = run(capsys, ["pretrain", *TINY, "--steps", str(step + 2), "--checkpoint-interval", "5", "--out", "run",
                                "--overwrite", "--resume"])
    assert rc == 2 and f"TrainConfig.max_steps differs: the checkpoint has {LONG}" in err  # checked against the staged run
    assert snapshot(env / "run") == before


def test_overwrite_replaces_only_when_complete_and_ctrl_c_resumes(env, capsys, monkeypatch):
    import gpt.train as train_module

    rc, _, err = run(capsys, pretrain("run", 6))
    assert rc == 0, err
    (env / "run" / "notes.txt").write_text("my notes")  # a user's files in the run folder: kept by the replacement
    (env / "run" / "plots").mkdir()
    (env / "run" / "plots" / "loss.png").write_bytes(b"png")
    before = snapshot(env / "run")
    real, count = train_module.lm_loss, [0]

    def interrupt_at_step_4(model, x, y):
        count[0] += 1
        if count[0] == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return real(model, x, y)

    monkeypatch.setattr(train_module, "lm_loss", interrupt_at_step_4)
    argv = pretrain("run", 8, "--overwrite")
    rc, _, err = run(capsys, argv)
    assert rc == 130, err
    assert "checkpoint saved in .run.overwrite/checkpoint" in err and "the previous run in run is untouched" in err
    assert snapshot(env / "run") == before
    resume = err.strip().splitlines()[-1].strip()
    assert resume == "python -m gpt " + shlex.join([str(a) for a in argv] + ["--resume"])
    monkeypatch.setattr(train_module, "lm_loss", real)
    rc, out, err = run(capsys, shlex.split(resume)[3:])
    assert rc == 0, err
    assert "kept 2 file(s) of the old run that are not the run's outputs: notes.txt, plots" in out
    assert not (env / ".run.overwrite").exists()
    assert (env / "run" / "notes.txt").read_text() == "my notes" and (env / "run" / "plots" / "loss.png").read_bytes() == b"png"
    assert (env / "run" / "model.safetensors").read_bytes() != before["model.safetensors"]  # the run's outputs are the new run's
    assert read_training_state(env / "run")["step"] == 8
    assert json.loads((env / "run" / "model_card.json").read_text())["steps"] == 8
    assert sorted(p.name for p in env.iterdir() if p.name.startswith(".run")) == []  # no staging, no lock, no old copy left


def test_a_batch_that_cannot_fit_is_refused_before_any_work(env, capsys, monkeypatch):
    import gpt.cli.pretrain as cli

    monkeypatch.setattr(cli, "load_pretraining_ids", lambda *a, **k: pytest.fail("worked before checking the memory"))
    rc, _, err = run(capsys, ["pretrain", *TINY, "--steps", "3", "--out", "run", "--batch-size", "100000000"])
    assert rc == 2 and "error: --batch-size 100000000 needs at least " in err and "lower --batch-size to " in err, err
    assert not (env / "run").exists()
    import gpt.cli.dapt as dapt

    monkeypatch.setattr(dapt, "load_splits", lambda *a, **k: pytest.fail("worked before checking the memory"))
    rc, _, err = run(capsys, ["dapt", "--steps", "1", "--batch-size", "100000", "--out", "d", "--device", "cpu"])
    assert rc == 2 and "error: --batch-size 100000 needs at least " in err and "is available on this machine" in err, err
    assert not (env / "d").exists()
