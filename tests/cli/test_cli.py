"""The command line, run in-process with ``gpt.cli.main([...])``: every bad input is one ``error: ...``
line and status 2 before any work (no output created or overwritten), runs are never overwritten
silently, and Ctrl-C saves a checkpoint that resumes to exactly the weights of an uninterrupted run
(also in a real process, with a real SIGINT)."""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

import gpt.cli.pretrain as cli
import gpt.io.downloads
import gpt.train as train_module
from gpt.cli import main
from gpt.cli.pretrain import auto_checkpoint_interval
from gpt.model import GPT, GPTConfig
from gpt.io.tokenizer_files import course_tokenizer_path, tokenizer_fingerprint
from gpt.io.resume import read_training_state
from gpt.io.weights import save_model

BOOK = "pg35"  # The Time Machine: the smallest registered book (about 54,000 tokens)
TINY = ["--preset", "course-tiny", "--books", BOOK, "--batch-size", "2", "--heldout-batches", "1",
        "--precision", "fp32", "--device", "cpu"]


def tiny_pretrain(out, steps=6, *extra, samples=()):
    return ["pretrain", *TINY, "--steps", str(steps), "--eval-interval", "3", "--out", str(out), "--samples", *samples, *extra]


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory):
    """A download cache shared by the tests of this file (the book is tokenized once)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def env(mirror_dir, data_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    monkeypatch.setenv("GPT_DATA_DIR", str(data_cache))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a command starts the expensive part (reading or tokenizing the corpus)."""

    def forbidden(*a, **k):
        raise AssertionError("the command started working before checking its arguments and outputs")

    monkeypatch.setattr(cli, "load_pretraining_ids", forbidden)
    monkeypatch.setattr(cli, "load_pretraining_texts", forbidden)


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_refused(capsys, argv, phrase):
    rc, out, err = run(capsys, *argv)
    assert rc == 2, (rc, out, err)
    assert phrase in err, err
    assert "Traceback" not in err
    return err


def tensors(path):
    return load_file(str(path))


def same_tensors(a, b) -> bool:
    ta, tb = tensors(a), tensors(b)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


# --- pretrain: bad arguments are refused before any work ------------------------------------------


@pytest.mark.parametrize(
    "extra, phrase",
    [
        (["--eval-interval", "0"], "argument --eval-interval: must be a whole number >= 1, got 0"),
        (["--steps", "0"], "argument --steps: must be a whole number >= 1, got 0"),
        (["--steps", "ten"], "argument --steps: must be a whole number, got 'ten'"),
        (["--heldout-batches", "0"], "argument --heldout-batches: must be a whole number >= 1, got 0"),
        (["--batch-size", "-2"], "argument --batch-size: must be a whole number >= 1"),
        (["--lr", "nan"], "argument --lr: must be a finite number > 0"),
        (["--lr", "0"], "argument --lr: must be a finite number > 0"),
        (["--warmup", "-1"], "argument --warmup: must be a whole number >= 0"),
        (["--val-fraction", "0"], "argument --val-fraction: must be between 0 and 1"),
        (["--val-fraction", "1.5"], "argument --val-fraction: must be between 0 and 1"),
        (["--checkpoint-interval", "-5"], "argument --checkpoint-interval: must be a whole number >= 0, got -5 (or 'auto')"),
        (["--preset", "gpt5"], "argument --preset: invalid choice: 'gpt5'"),
        (["--preset", "gpt2-small"], "preset 'gpt2-small' has a vocabulary of 50257 tokens, the course tokenizer 4096"),
        (["--books", "pg99999"], "--books: 'pg99999' is not a known book; choose from"),
        (["--books", "pg35,pg35"], "--books names pg35 more than once"),
        (["--books", "the_verdict"], "--books: 'the_verdict' is a dataset, not one of the pretraining books"),
        (["--books", "pg35,,pg120"], "--books 'pg35,,pg120' has an empty name"),
        (["--device", "gpu"], "'gpu' is not a device"),
        (["--samples", ""], "the prompt '' is empty"),
        (["--samples", "a <|endoftext|> b"], "contains <|endoftext|>, a special token that cannot be typed in a prompt"),
    ],
)
def test_pretrain_refuses_bad_arguments_before_any_work(env, capsys, no_work, extra, phrase):
    # later options win in argparse, so the bad value is appended after the tiny run's own
    argv = ["pretrain", *TINY, "--steps", "6", "--out", "run", *extra]
    assert_refused(capsys, argv, phrase)
    assert not (env / "run").exists()


def test_pretrain_refuses_an_existing_run_or_export(env, capsys, no_work):
    (env / "run").mkdir()
    (env / "run" / "notes.txt").write_text("mine")
    err = assert_refused(capsys, tiny_pretrain("run"), "--out run already exists; pass --resume to continue the run in it, --overwrite")
    assert "error: " in err
    assert (env / "run" / "notes.txt").read_text() == "mine"
    (env / "export").mkdir()
    (env / "export" / "model.safetensors").write_bytes(b"precious")
    assert_refused(capsys, tiny_pretrain("run2", 6, "--export", "export"), "export already exists; pass --overwrite")
    assert (env / "export" / "model.safetensors").read_bytes() == b"precious"
    assert not (env / "run2").exists()
    assert_refused(capsys, tiny_pretrain("run3", 6, "--export", "run3/export"), "must be separate folders")
    (env / "afile").write_text("x")
    assert_refused(capsys, tiny_pretrain("afile"), "afile is a file, but a folder is to be written there")


def test_resume_needs_a_checkpoint(env, capsys, no_work):
    assert_refused(capsys, tiny_pretrain("nothing", 6, "--resume"), "nothing to resume in nothing")


# --- pretrain: runs, refusals that need a run, resume ------------------------------------------------


@pytest.fixture(scope="session")
def finished_run_template(mirror_dir, data_cache, tmp_path_factory):
    """One finished 6-step run (made once; each test gets a copy)."""
    where = tmp_path_factory.mktemp("template")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GPT_DATA_MIRROR", str(mirror_dir))
        mp.setenv("GPT_DATA_DIR", str(data_cache))
        mp.chdir(where)
        import contextlib
        import io

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(tiny_pretrain("run", 6, samples=["The old man"]))
    assert rc == 0, err.getvalue()
    return where / "run", out.getvalue()


@pytest.fixture
def finished_run(env, finished_run_template):
    template, out = finished_run_template
    shutil.copytree(template, env / "run")
    return env / "run", out


def test_pretrain_writes_a_run(finished_run):
    run_dir, out = finished_run
    assert sorted(p.name for p in run_dir.iterdir()) == ["MODEL_CARD.md", "checkpoint", "model.safetensors", "model_card.json"]
    card = json.loads((run_dir / "model_card.json").read_text())
    assert card["corpus"] == {gpt.io.downloads.REGISTRY[BOOK].relpath: gpt.io.downloads.REGISTRY[BOOK].sha256}
    assert card["steps"] == 6 and card["heldout_eval_batches"] == 1
    assert card["command"].startswith("python -m gpt pretrain --preset course-tiny") and "--resume" not in card["command"]
    state = read_training_state(run_dir)
    assert state["step"] == 6 and state["run"]["books"] == [BOOK]
    assert state["train_config"]["checkpoint_interval"] == auto_checkpoint_interval(6) == 1
    assert same_tensors(run_dir / "model.safetensors", run_dir / "checkpoint" / "model.safetensors")
    assert "--- 'The old man' -> The old man" in out


def test_sample_a_trained_run(finished_run, capsys):
    run_dir, _ = finished_run
    rc, out, err = run(capsys, "sample", "--checkpoint", run_dir / "model.safetensors", "--prompt", "Once", "--max-new-tokens", "5")
    assert rc == 0, err
    assert out.startswith("--- 'Once' -> Once")


def test_pretrain_existing_run_needs_resume_or_overwrite(finished_run, capsys, monkeypatch):
    run_dir, _ = finished_run
    before = (run_dir / "model.safetensors").read_bytes()
    assert_refused(capsys, tiny_pretrain("run"), "already exists; pass --resume")
    assert (run_dir / "model.safetensors").read_bytes() == before  # untouched
    # resuming a finished run trains no further and ends with the same weights
    rc, _, err = run(capsys, *tiny_pretrain("run", 6, "--resume"))
    assert rc == 0, err
    assert same_tensors(run_dir / "model.safetensors", run_dir / "checkpoint" / "model.safetensors")
    assert read_training_state(run_dir)["step"] == 6
    # --overwrite starts over
    rc, _, err = run(capsys, *tiny_pretrain("run", 3, "--overwrite"))
    assert rc == 0, err
    assert read_training_state(run_dir)["step"] == 3


@pytest.mark.parametrize(
    "change, phrase",
    [
        (["--books", "pg35,pg120"], "books differs: the checkpoint has ['pg35'], this run has ['pg35', 'pg120']"),
        (["--val-fraction", "0.1"], "val_fraction differs: the checkpoint has 0.05, this run has 0.1"),
        (["--lr", "0.001"], "TrainConfig.lr differs: the checkpoint has 0.003, this run has 0.001"),
        (["--steps", "8"], "TrainConfig.max_steps differs: the checkpoint has 6, this run has 8"),
        (["--seed", "5"], "TrainConfig.seed differs: the checkpoint has 1234, this run has 5"),
    ],
)
def test_resume_with_other_arguments_is_refused_before_any_work(finished_run, capsys, monkeypatch, change, phrase):
    run_dir, _ = finished_run
    before = (run_dir / "checkpoint" / "state.json").read_bytes()
    monkeypatch.setattr(cli, "load_pretraining_ids", lambda *a, **k: pytest.fail("tokenized before checking the resume"))
    assert_refused(capsys, [*tiny_pretrain("run", 6, "--resume"), *change], phrase)
    assert (run_dir / "checkpoint" / "state.json").read_bytes() == before


def test_resume_of_a_damaged_checkpoint_names_the_file(finished_run, capsys):
    run_dir, _ = finished_run
    state = run_dir / "checkpoint" / "state.json"
    state.write_text(state.read_text()[:100])  # truncated
    assert_refused(capsys, tiny_pretrain("run", 6, "--resume"), "run/checkpoint/state.json is not valid JSON")


def _interrupt_at_step(monkeypatch, n):
    real, count = train_module.lm_loss, [0]

    def lm_loss(model, x, y):
        count[0] += 1
        if count[0] == n:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of step n
        return real(model, x, y)

    monkeypatch.setattr(train_module, "lm_loss", lm_loss)
    return real


def test_ctrl_c_saves_and_the_printed_command_resumes_exactly(env, capsys, monkeypatch):
    # --overwrite (harmless here: nothing to replace) stays in the resume command, and does not restart the run
    argv = tiny_pretrain("run", 8, "--eval-interval", "100", "--checkpoint-interval", "0", "--overwrite", samples=["Hi"])
    real = _interrupt_at_step(monkeypatch, 5)
    rc, out, err = run(capsys, *argv)
    assert rc == 130, err
    assert "interrupted after step 5 of 8; checkpoint saved in run/checkpoint" in err
    resume = err.strip().splitlines()[-1].strip()
    assert resume == "python -m gpt " + shlex.join([str(a) for a in argv] + ["--resume"])
    assert read_training_state(env / "run")["step"] == 5
    assert not (env / "run" / "model.safetensors").exists()
    trained = []  # the resumed run trains steps 6 to 8 only

    def counting(model, x, y):
        trained.append(model.training)
        return real(model, x, y)

    monkeypatch.setattr(train_module, "lm_loss", counting)
    rc, _, err = run(capsys, *shlex.split(resume)[3:])
    assert rc == 0, err
    assert trained.count(True) == 3
    monkeypatch.setattr(train_module, "lm_loss", real)
    rc, _, err = run(capsys, *tiny_pretrain("straight", 8, "--eval-interval", "100", "--checkpoint-interval", "0", samples=["Hi"]))
    assert rc == 0, err
    assert same_tensors(env / "run" / "model.safetensors", env / "straight" / "model.safetensors")


def test_ctrl_c_before_training_saves_nothing(env, capsys, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load_pretraining_ids", interrupted)
    rc, _, err = run(capsys, *tiny_pretrain("run"))
    assert rc == 130 and "interrupted" in err
    assert not (env / "run").exists()


def test_export_writes_weights_and_card(env, capsys):
    rc, _, err = run(capsys, *tiny_pretrain("run", 3, "--export", "exp"))
    assert rc == 0, err
    assert sorted(p.name for p in (env / "exp").iterdir()) == ["MODEL_CARD.md", "model.safetensors", "model_card.json"]
    assert same_tensors(env / "exp" / "model.safetensors", env / "run" / "model.safetensors")


SUBPROCESS_STEPS = 300
HANG = 1800  # seconds: subprocess limits here only guard against a hang, never check speed


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_real_sigint_in_a_real_process(env, mirror_dir, data_cache):
    """``python -m gpt pretrain`` in its own process gets a real SIGINT after a few steps: it exits with
    130 and prints the resume command; that command finishes the run with exactly the weights of an
    uninterrupted run of the same command (which runs meanwhile, in parallel, one thread each)."""
    penv = {**os.environ, "GPT_DATA_MIRROR": str(mirror_dir), "GPT_DATA_DIR": str(data_cache), "OMP_NUM_THREADS": "1"}
    common = ["--eval-interval", "1000", "--checkpoint-interval", "5"]
    argv = tiny_pretrain("run", SUBPROCESS_STEPS, *common)
    straight = subprocess.Popen([sys.executable, "-m", "gpt", *tiny_pretrain("straight", SUBPROCESS_STEPS, *common)],
                                cwd=env, env=penv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with open(env / "err.txt", "w") as fe:
            p = subprocess.Popen([sys.executable, "-m", "gpt", *argv], stdout=subprocess.DEVNULL, stderr=fe, cwd=env, env=penv)
            state = env / "run" / "checkpoint" / "state.json"
            deadline = time.monotonic() + HANG
            while not state.exists() and p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert p.poll() is None, "the run ended before it could be interrupted"
            p.send_signal(signal.SIGINT)
            rc = p.wait(timeout=HANG)
        err = (env / "err.txt").read_text()
        assert rc == 130, err[-2000:]
        step = read_training_state(env / "run")["step"]
        assert 5 <= step < SUBPROCESS_STEPS
        assert f"interrupted after step {step} of {SUBPROCESS_STEPS}; checkpoint saved in run/checkpoint" in err
        resume = err.strip().splitlines()[-1].strip()
        assert resume == "python -m gpt " + shlex.join(argv + ["--resume"])
        done = subprocess.run([sys.executable, *shlex.split(resume)[1:]], cwd=env, env=penv, capture_output=True, text=True, timeout=HANG)
        assert done.returncode == 0, done.stderr[-2000:]
        assert straight.wait(timeout=HANG) == 0
    finally:
        straight.kill() if straight.poll() is None else None
    assert same_tensors(env / "run" / "model.safetensors", env / "straight" / "model.safetensors")
    a, b = read_training_state(env / "run"), read_training_state(env / "straight")
    assert a["step"] == b["step"] == SUBPROCESS_STEPS
    assert a["history"]["train_loss"] == b["history"]["train_loss"]


# --- train-tokenizer ---------------------------------------------------------------------------------


def test_train_tokenizer_never_writes_into_the_package(env, capsys, no_work):
    shipped = course_tokenizer_path()
    before = shipped.read_bytes()
    assert_refused(capsys, ["train-tokenizer", "--vocab-size", "300", "--out", shipped], "inside the installed package's assets folder")
    assert_refused(capsys, ["train-tokenizer", "--out", shipped.parent / "other.json", "--overwrite"], "train-tokenizer never writes there")
    assert shipped.read_bytes() == before


def test_train_tokenizer_refuses_an_existing_file_or_bad_size(env, capsys, no_work):
    (env / "tok.json").write_text("mine")
    assert_refused(capsys, ["train-tokenizer", "--out", "tok.json"], "tok.json already exists; pass --overwrite")
    assert (env / "tok.json").read_text() == "mine"
    assert_refused(capsys, ["train-tokenizer", "--vocab-size", "100"], "argument --vocab-size: must be a whole number >= 257, got 100")
    assert_refused(capsys, ["train-tokenizer", "--out", env], "is a folder, but a file is to be written there")


def test_train_tokenizer_default_output_is_under_runs(env, capsys, monkeypatch):
    monkeypatch.setattr(cli, "load_pretraining_texts", lambda *a, **k: {"t": "the cat sat on the mat, " * 50 + "a quick brown fox jumps"})
    rc, out, err = run(capsys, "train-tokenizer", "--vocab-size", "270")
    assert rc == 0, err
    path = env / "runs" / "tokenizer" / "course_bpe_270.json"
    assert path.exists() and "saved to runs/tokenizer/course_bpe_270.json" in out
    assert_refused(capsys, ["train-tokenizer", "--vocab-size", "270"], "already exists")
    rc, _, err = run(capsys, "train-tokenizer", "--vocab-size", "270", "--overwrite")
    assert rc == 0, err


# --- sample ------------------------------------------------------------------------------------------


def _model_file(tmp_path, name="m.safetensors", metadata=None, **overrides):
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("course-tiny", **overrides))
    path = tmp_path / name
    save_model(model, path, metadata=metadata)
    return path, model


@pytest.mark.parametrize(
    "prompt, phrase",
    [
        ("", "the prompt '' is empty"),
        ("   ", "the prompt '   ' is empty"),
        ("The end<|endoftext|>", "contains <|endoftext|>, a special token that cannot be typed in a prompt"),
    ],
)
def test_sample_refuses_bad_prompts(env, capsys, prompt, phrase):
    assert_refused(capsys, ["sample", "--prompt", prompt], phrase)


def test_sample_refuses_bad_checkpoints(env, capsys):
    assert_refused(capsys, ["sample", "--checkpoint", "missing.safetensors"], "checkpoint missing.safetensors does not exist")
    (env / "run").mkdir()
    _model_file(env / "run", "model.safetensors")
    assert_refused(capsys, ["sample", "--checkpoint", "run"], "run is a folder, but a checkpoint file (.safetensors) is expected; did you mean run/model.safetensors?")
    small, _ = _model_file(env, "small.safetensors", vocab_size=512)
    assert_refused(capsys, ["sample", "--checkpoint", small], "has a vocabulary of 512 tokens, but the course tokenizer has 4096")
    other, _ = _model_file(env, "other.safetensors", metadata={"tokenizer_fingerprint": "0123456789abcdef"})
    assert_refused(capsys, ["sample", "--checkpoint", other], "was made with another tokenizer (fingerprint 0123456789abcdef")
    _, model = _model_file(env)
    state = {k: v.clone() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    state["ln_f.bias"][1] = float("inf")
    save_file(state, str(env / "inf.safetensors"), metadata={"gpt_config": json.dumps(model.config.to_dict())})
    assert_refused(capsys, ["sample", "--checkpoint", "inf.safetensors"], "tensor 'ln_f.bias' holds 1 NaN or infinite value")
    save_file(state, str(env / "meta.safetensors"), metadata={"gpt_config": '{"vocab_size": 4096,'})
    assert_refused(capsys, ["sample", "--checkpoint", "meta.safetensors"], "meta.safetensors: its 'gpt_config' metadata is not valid JSON")
    (env / "junk.safetensors").write_bytes(b"\x00" * 100)
    assert_refused(capsys, ["sample", "--checkpoint", "junk.safetensors"], "junk.safetensors is not a readable safetensors checkpoint")


@pytest.mark.parametrize(
    "option, value, phrase",
    [
        ("--max-new-tokens", "-1", "argument --max-new-tokens: must be a whole number >= 1, got -1"),
        ("--temperature", "nan", "argument --temperature: must be a finite number >= 0"),
        ("--top-k", "0", "argument --top-k: must be a whole number >= 1, got 0"),
    ],
)
def test_sample_refuses_bad_options(env, capsys, option, value, phrase):
    assert_refused(capsys, ["sample", option, value], phrase)


def test_sample_with_a_matching_checkpoint(env, capsys):
    path, _ = _model_file(env, metadata={"tokenizer_fingerprint": tokenizer_fingerprint(cli_tokenizer())})
    rc, out, err = run(capsys, "sample", "--checkpoint", path, "--prompt", "Hello", "there", "--max-new-tokens", "3", "--temperature", "0")
    assert rc == 0, err
    assert out.count("--- ") == 2 and "--- 'Hello' -> Hello" in out and "--- 'there' -> there" in out


def cli_tokenizer():
    from gpt.tokenizer import course_tokenizer

    return course_tokenizer()


# --- main ---------------------------------------------------------------------------------------------


def test_main_returns_status_codes(env, capsys):
    assert run(capsys, "--help")[0] == 0
    rc, _, err = run(capsys)
    assert rc == 2 and "required" in err
    rc, _, err = run(capsys, "no-such-command")
    assert rc == 2 and "invalid choice" in err


def test_unexpected_errors_keep_their_traceback(env, monkeypatch):
    def bug(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "_cmd_sample", bug)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        main(["sample"])


def test_python_dash_m_gpt_exits_with_the_status(env, mirror_dir, data_cache):
    penv = {**os.environ, "GPT_DATA_MIRROR": str(mirror_dir), "GPT_DATA_DIR": str(data_cache)}
    done = subprocess.run([sys.executable, "-m", "gpt", "sample", "--prompt", ""], cwd=env, env=penv, capture_output=True, text=True, timeout=HANG)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: the prompt '' is empty; give some text to continue"


def test_finetune_flags_reach_pad_to_multiple_of_and_attn_impl():
    import argparse

    from gpt.cli import finetune as finetune_cli
    from gpt.errors import ConfigError

    parser = argparse.ArgumentParser()
    finetune_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["finetune", "--strategy", "lora", "--pad-to-multiple-of", "8", "--attn-impl", "explicit", "--seeds", "0"])
    [config] = finetune_cli.configs_from_flags(args)
    assert (config.pad_to_multiple_of, config.attn_impl) == (8, "explicit")
    [default] = finetune_cli.configs_from_flags(parser.parse_args(["finetune", "--strategy", "lora", "--seeds", "0"]))
    assert (default.pad_to_multiple_of, default.attn_impl) == (16, "auto")
    with pytest.raises(ConfigError, match="--pad-to-multiple-of does not apply"):
        finetune_cli.configs_from_flags(parser.parse_args(["finetune", "--strategy", "baseline", "--pad-to-multiple-of", "8"]))
    with pytest.raises(SystemExit):  # argparse's own refusal of an unknown kernel
        parser.parse_args(["finetune", "--attn-impl", "flash"])
