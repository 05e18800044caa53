"""Results folders shared by runs: parallel runs all keep their rows (results.csv is rewritten under
its lock), the same run twice is refused naming the first, a label keeps one configuration, and
contradictory flags are refused."""

import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from gpt.cli import main
from gpt.errors import ConfigError
from gpt.experiments import results as R
from gpt.experiments import runner as E
from gpt.experiments.compare import run_recipe
from gpt.finetune import default_config
from gpt.io.lock import output_lock

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))




def finetune(tiny_checkpoint, out, strategy="head", *extra, seeds=("0",)):
    return ["finetune", "--strategy", strategy, "--seeds", *seeds, "--epochs", "1", "--checkpoint", str(tiny_checkpoint), "--out", str(out), *extra]


def refused(capsys, argv, phrase):
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert phrase in err and "Traceback" not in err, err
    return err


# --- results.csv under its lock --------------------------------------------------------------------

WRITE = textwrap.dedent("""
    import sys
    from gpt.experiments import results as R
    from gpt.finetune import FinetuneResult, default_config
    out, seeds = sys.argv[1], [int(s) for s in sys.argv[2:]]
    for seed in seeds:
        metrics = {s: {"accuracy": 0.9, "precision": 0.9, "recall": 0.9, "f1": 0.9} for s in ("val", "test", "test_natural")}
        res = FinetuneResult(config=default_config("head", seed=seed), history={}, best_epoch=1, metrics=metrics,
                             trainable_params=66, total_params=1000, wall_seconds=1.0, train_seconds=0.5, seconds_per_epoch=0.5,
                             seconds_per_step=0.01, peak_memory_bytes=None, peak_memory_method="unavailable",
                             optimizer_state_bytes=528, gradient_bytes=264, activation_bytes=100, truncated_messages={},
                             device="cpu", precision="fp32")
        R.write_result(out, R.result_row(res), res)
""")


def test_parallel_appends_keep_every_row(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WRITE, str(tmp_path), str(a), str(b)], env=env) for a, b in ((0, 1), (2, 3), (4, 5))]
    assert [p.wait(timeout=600) for p in procs] == [0, 0, 0]
    table = pd.read_csv(tmp_path / "results.csv")
    assert sorted(table["seed"]) == [0, 1, 2, 3, 4, 5]
    assert "| head | 0 1 2 3 4 5 |" in (tmp_path / "summary.md").read_text()
    assert not list(tmp_path.glob(".*.lock"))


def test_three_finetune_processes_into_one_out_give_three_rows(tiny_checkpoint, tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "results"
    procs = [subprocess.Popen([sys.executable, "-m", "gpt", *finetune(tiny_checkpoint, out, seeds=(str(s),))], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for s in range(3)]
    errs = [p.communicate(timeout=1800)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errs
    assert sorted(pd.read_csv(out / "results.csv")["seed"]) == [0, 1, 2]


def test_the_same_run_twice_is_refused_naming_the_first(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "results"
    with output_lock(out / "runs" / "head_seed0", command="the first run"):
        err = refused(capsys, finetune(tiny_checkpoint, out), f"error: head seed 0 in {out} is being written by pid {os.getpid()}")
    assert "(the first run)" in err
    assert not (out / "results.csv").exists()


# --- one configuration per label -------------------------------------------------------------------


def _fake_run(out, seed, **config):
    from gpt.finetune import FinetuneResult

    metrics = {s: {"accuracy": 0.9, "precision": 0.9, "recall": 0.9, "f1": 0.9} for s in ("val", "test", "test_natural")}
    res = FinetuneResult(config=default_config("head", seed=seed, **config), history={}, best_epoch=1, metrics=metrics,
                         trainable_params=66, total_params=1000, wall_seconds=1.0, train_seconds=0.5, seconds_per_epoch=0.5,
                         seconds_per_step=0.01, peak_memory_bytes=None, peak_memory_method="unavailable", optimizer_state_bytes=528,
                         gradient_bytes=264, activation_bytes=100, truncated_messages={}, device="cpu", precision="fp32")
    R.write_result(out, R.result_row(res, {"checkpoint_sha256": "abc"}), res)


def test_a_label_keeps_one_configuration(tmp_path):
    _fake_run(tmp_path, 0)
    _fake_run(tmp_path, 1)
    same = run_recipe(default_config("head", seed=2).to_dict(), "abc")
    R.check_results_dir(tmp_path, [("head", 2)], recipes={"head": same})
    how = default_config("head", seed=2, device="cuda", precision="bf16", pad_to_multiple_of=None, attn_impl="explicit")
    R.check_results_dir(tmp_path, [("head", 2)], recipes={"head": run_recipe(how.to_dict(), "abc")})  # how, not what
    other = run_recipe(default_config("head", seed=2, lr=0.5).to_dict(), "abc")
    with pytest.raises(ConfigError) as e:
        R.check_results_dir(tmp_path, [("head", 2)], recipes={"head": other})
    assert str(e.value).startswith(f"{tmp_path} already holds head seeds 0 1 with another configuration (lr 0.03 vs 0.5, "
                                   "theirs vs this run's); a label names one configuration")
    assert "finetune --label NAME" in str(e.value) and "--overwrite" in str(e.value)
    with pytest.raises(ConfigError, match="checkpoint_sha256 'abc' vs 'def'"):
        R.check_results_dir(tmp_path, [("head", 2)], recipes={"head": run_recipe(default_config("head").to_dict(), "def")})
    with pytest.raises(ConfigError, match="head seed 1 with another"):  # replacing seed 0 alone would still mix two
        R.check_results_dir(tmp_path, [("head", 0)], overwrite=True, recipes={"head": other})
    R.check_results_dir(tmp_path, [("head", 0), ("head", 1)], overwrite=True, recipes={"head": other})  # replaces them all


def test_finetune_refuses_another_configuration_under_a_label(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(finetune(tiny_checkpoint, out)) == 0
    before = (out / "results.csv").read_bytes()
    capsys.readouterr()
    refused(capsys, finetune(tiny_checkpoint, out, "head", "--lr", "0.5", seeds=("1",)),
            f"error: {out} already holds head seed 0 with another configuration (lr 0.03 vs 0.5, theirs vs this run's)")
    refused(capsys, finetune(tiny_checkpoint, out, "head", "--lr", "0.5", "--resume", seeds=("0", "1")), "lr 0.03 vs 0.5")
    assert (out / "results.csv").read_bytes() == before
    assert main(finetune(tiny_checkpoint, out, "head", "--lr", "0.5", "--label", "head-lr0.5", seeds=("1",))) == 0
    table = pd.read_csv(out / "results.csv")
    assert list(zip(table["strategy"], table["seed"])) == [("head", 0), ("head-lr0.5", 1)]


# --- contradictory flags and impossible settings ---------------------------------------------------


def test_contradictory_and_impossible_flags_are_refused_before_any_work(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "results"
    refused(capsys, finetune(tiny_checkpoint, out, "head", "--resume", "--overwrite"),
            "error: --resume keeps the rows already in results.csv and continues interrupted runs, --overwrite reruns and replaces "
            "them; give one of the two")
    refused(capsys, finetune(tiny_checkpoint, out, "lora", "--rank", "100000", "--alpha", "16"),
            f"error: r (the LoRA rank, --rank) 100000 is larger than the layers of {tiny_checkpoint} allow: its adapted layers are 32 wide")
    refused(capsys, finetune(tiny_checkpoint, out, "head", "--label", "a b"), "name (--label) must be 1 to 64 letters")
    refused(capsys, ["experiment", "--checkpoint", tiny_checkpoint, "--out", out, "--skip-existing", "--overwrite"],
            "error: --skip-existing keeps the rows already in results.csv and --overwrite reruns and replaces them; give one of the two")
    with pytest.raises(ConfigError, match="give one of the two"):
        E.run_experiment(out, skip_existing=True, overwrite=True, checkpoint=str(tiny_checkpoint))
    assert not out.exists()


def test_finetune_default_out_is_a_runs_folder():
    assert E.FINETUNE_OUT == "runs/finetune"
