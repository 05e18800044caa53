"""The finetune and experiment commands: result rows, refusals before work, Ctrl-C and --resume, the plot."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from gpt.experiments import runner as E
from gpt.cli import main
from gpt.experiments.results import RESULT_COLUMNS
from gpt.experiments.results import plot_accuracy_vs_params
from helpers_classify import TINY_ONE_BLOCK





def finetune(ckpt, out, strategy, *extra):
    return main(["finetune", "--strategy", strategy, "--seeds", "0", "--epochs", "1", "--checkpoint", str(ckpt), "--out", str(out), *extra])


def test_experiment_runs_cover_the_issue():
    labels = [label for label, _ in E.experiment_runs()]
    assert labels == ["full", "last-block", "head"] + [f"lora-r{r}" for r in (1, 2, 4, 8, 16, 32)] + ["baseline"]
    overrides = dict(E.experiment_runs())["lora-r16"]
    assert overrides == {"strategy": "lora", "r": 16, "lora_alpha": 32.0}
    with pytest.raises(ValueError, match="unknown strategy"):
        E.experiment_runs(strategies=("lora", "prefix-tuning"))


def test_cli_writes_result_rows(tiny_checkpoint, tmp_path):
    out = tmp_path / "results"
    for strategy, extra in (("head", []), ("baseline", []), ("lora", ["--rank", "2", "--alpha", "4"]), ("full", [])):
        assert finetune(tiny_checkpoint, out, strategy, *extra) == 0
    table = pd.read_csv(out / "results.csv").set_index("strategy")
    assert list(table.index) == ["full", "head", "lora-r2", "baseline"] and list(table.reset_index().columns) == RESULT_COLUMNS
    assert table.loc["head", "trainable_params"] == 66 and table["command"].str.startswith("python -m gpt").all()
    # r·(in + out) per wrapped layer: q, k, v, out (32 -> 32), fc (32 -> 128), proj (128 -> 32); + the head
    assert table.loc["lora-r2", "trainable_params"] == 2 * (4 * 64 + 2 * 160) * TINY_ONE_BLOCK["n_layer"] + 66
    assert table.loc["lora-r2", "r"] == 2 and table.loc["lora-r2", "lora_alpha"] == 4
    assert table.loc["full", "stored_bytes"] > table.loc["full", "trainable_params"] * 4
    assert table.loc["lora-r2", "stored_bytes"] < table.loc["full", "stored_bytes"] / 5
    assert 0 < table.loc["lora-r2", "seconds_per_step"] < table.loc["lora-r2", "seconds_per_epoch"]
    assert (out / "runs" / "lora-r2_seed0.json").exists() and "| lora-r2 |" in (out / "summary.md").read_text()
    assert not (out / "checkpoints").exists(), "a finished run leaves no checkpoint behind"


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["--strategy", "head", "--rank", "4"], "--rank does not apply to the strategy 'head'"),
        (["--strategy", "baseline", "--dropout", "0.1"], "--dropout does not apply"),
        (["--strategy", "head", "--epochs", "0"], "epochs must be a whole number >= 1"),
        (["--strategy", "head", "--lr", "-1"], "lr must be"),
        (["--strategy", "lora", "--rank", "0"], "r must be a whole number >= 1"),
        (["--strategy", "head", "--seeds", "1", "1"], "repeats a seed"),
        (["--strategy", "head", "--device", "cuda:3"], "CUDA"),
        (["--strategy", "head", "--checkpoint", "no/such.safetensors"], "does not exist"),
    ],
)
def test_bad_flags_are_refused_before_any_work(tiny_checkpoint, tmp_path, capsys, args, phrase):
    out = tmp_path / "results"
    argv = ["finetune", *args, "--out", str(out)]
    if "--seeds" not in args:
        argv += ["--seeds", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert phrase in err and "Traceback" not in err
    assert not out.exists()


def test_outputs_are_checked_before_training(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "results"
    assert finetune(tiny_checkpoint, out, "head") == 0
    before = (out / "results.csv").read_bytes()
    capsys.readouterr()
    assert finetune(tiny_checkpoint, out, "head") == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "results.csv").read_bytes() == before
    assert finetune(tiny_checkpoint, out, "head", "--resume") == 0  # the row exists: skipped
    assert "skipped" in capsys.readouterr().out and (out / "results.csv").read_bytes() == before
    assert finetune(tiny_checkpoint, out, "head", "--overwrite") == 0
    assert (out / "results.csv").read_bytes() != before
    (tmp_path / "afile").write_text("x")
    assert finetune(tiny_checkpoint, tmp_path / "afile", "head") == 2
    assert "is a file" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "results.csv").write_text("name,score\nx,1\n")
    assert finetune(tiny_checkpoint, foreign, "head") == 2
    assert "not a results table" in capsys.readouterr().err


def _spawn(ckpt, out, *extra):
    cmd = [sys.executable, "-m", "gpt", "finetune", "--strategy", "lora", "--rank", "2", "--alpha", "4", "--seeds", "0",
           "--epochs", "3", "--checkpoint", str(ckpt), "--out", str(out), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())


def test_ctrl_c_saves_and_resume_gives_the_same_result(tiny_checkpoint, tmp_path):
    straight = _spawn(tiny_checkpoint, tmp_path / "a")
    interrupted = _spawn(tiny_checkpoint, tmp_path / "b")
    checkpoint = tmp_path / "b" / "checkpoints" / "lora-r2_seed0"
    deadline = time.time() + 1800
    while not checkpoint.exists() and interrupted.poll() is None and time.time() < deadline:
        time.sleep(0.05)  # the first epoch's checkpoint appears: Ctrl-C in the second epoch
    interrupted.send_signal(signal.SIGINT)
    _, err = interrupted.communicate(timeout=1800)
    assert interrupted.returncode == 130, err
    assert "resume with: python -m gpt finetune" in err and "--resume" in err and "Traceback" not in err
    assert (checkpoint / "state.json").exists() and not (tmp_path / "b" / "results.csv").exists()
    resumed = _spawn(tiny_checkpoint, tmp_path / "b", "--resume")
    assert resumed.wait(timeout=1800) == 0 and straight.wait(timeout=1800) == 0
    a, b = (json.loads((tmp_path / d / "runs" / "lora-r2_seed0.json").read_text()) for d in "ab")
    assert b["resumed"] and not a["resumed"]
    assert a["history"]["train_loss"] == b["history"]["train_loss"]
    assert a["metrics"]["test"]["spam_probability"] == b["metrics"]["test"]["spam_probability"]
    assert not checkpoint.exists()


def test_tiny_experiment_end_to_end_and_resume(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "results"
    kw = dict(seeds=(0,), strategies=("head", "lora"), ranks=(1, 4), checkpoint=str(tiny_checkpoint), epochs=1)
    csv = E.run_experiment(out, command="python -m gpt experiment --test", **kw)
    table = pd.read_csv(csv)
    assert list(table["strategy"]) == ["head", "lora-r1", "lora-r4"]
    assert (table["command"] == "python -m gpt experiment --test").all()
    assert table.set_index("strategy").loc["lora-r4", "trainable_params"] > table.set_index("strategy").loc["lora-r1", "trainable_params"]
    assert (out / "accuracy_vs_params.png").stat().st_size > 10_000
    assert "| lora-r4 |" in (out / "summary.md").read_text()
    capsys.readouterr()
    E.run_experiment(out, skip_existing=True, **kw)  # resume: nothing left to do, nothing rerun
    assert "3 runs, 3 already done" in capsys.readouterr().out
    assert pd.read_csv(csv)["date"].tolist() == table["date"].tolist()
    with pytest.raises(Exception, match="--overwrite"):  # without --skip-existing or --overwrite: refused
        E.run_experiment(out, **kw)
    with pytest.raises(ValueError, match="r must be a whole number"):
        E.run_experiment(tmp_path / "other", **{**kw, "ranks": (0,)})


def test_plot_accuracy_vs_params_from_a_table():
    rows = []
    for strategy, params, accs in (("full", 2_600_000, [0.95, 0.96]), ("lora-r8", 110_978, [0.96, 0.97]), ("baseline", 14_000, [0.955, 0.958])):
        for seed, a in enumerate(accs):
            row = {c: 0 for c in RESULT_COLUMNS}
            row.update(strategy=strategy, seed=seed, trainable_params=params, total_params=2_700_000, test_accuracy=a)
            rows.append(row)
    ax = plot_accuracy_vs_params(pd.DataFrame(rows))
    assert ax.get_xscale() == "log" and len(ax.get_lines()) >= 2


def test_summarize_rewrites_the_summary_with_intervals_and_verdicts(tmp_path, capsys):
    """`python -m gpt summarize` on a copy of the committed results: the comparison section from the stored predictions."""
    import shutil
    from pathlib import Path

    committed = Path(__file__).resolve().parents[2] / "results" / "finetune"
    out = tmp_path / "finetune"
    shutil.copytree(committed, out)
    (out / "summary.md").unlink()
    assert main(["summarize", "--out", str(out)]) == 0
    text = (out / "summary.md").read_text()
    assert "## How sure are these numbers?" in text and "| baseline |" in text and "| lora-r8 |" in text
    assert text.count(" [") >= 20  # every strategy's two intervals
    assert main(["summarize", "--out", str(tmp_path / "nothing")]) == 2
    assert "nothing to summarize" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The main job: its own run folder, resuming it, and the comparison with committed results

QUICK = dict(seeds=(0,), strategies=("head", "lora", "baseline"), ranks=(2,), epochs=1)


def test_main_job_writes_a_run_folder_of_its_own_and_resumes_it(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    real_call = E._call_child
    calls = []

    def stop_at_second_run(args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second run
        return real_call(args)

    monkeypatch.setattr(E, "_call_child", stop_at_second_run)
    with pytest.raises(KeyboardInterrupt):
        E.run_experiment(None, checkpoint=str(tiny_checkpoint), against="", **QUICK)
    folders = list((tmp_path / "runs" / "experiment").iterdir())
    assert len(folders) == 1 and "a new run folder" in capsys.readouterr().out
    plan = json.loads((folders[0] / "experiment.json").read_text())
    assert plan["finished"] is None and plan["environment"]["torch"] == torch.__version__ and plan["environment"]["commit"]
    monkeypatch.setattr(E, "_call_child", real_call)
    csv = E.run_experiment(None, checkpoint=str(tiny_checkpoint), against="", **QUICK)  # run again: resumes the same folder
    out = capsys.readouterr().out
    assert csv.parent.resolve() == folders[0].resolve() and "resuming the unfinished run" in out and "3 runs, 1 already done" in out
    assert "[3/3 done] baseline seed 0: balanced test accuracy" in out and "ETA 0:00" in out
    assert list(pd.read_csv(csv)["strategy"]) == ["head", "lora-r2", "baseline"]
    assert json.loads((folders[0] / "experiment.json").read_text())["finished"]
    again = E.run_experiment(None, checkpoint=str(tiny_checkpoint), against="", **QUICK)  # finished: a new folder, never an old one reused
    assert again.parent.resolve() != folders[0].resolve() and len(list((tmp_path / "runs" / "experiment").iterdir())) == 2
    assert not (tmp_path / "results").exists()


def test_main_job_compares_with_committed_results(tiny_checkpoint, tmp_path, capsys):
    from gpt.experiments.compare import DIFFERS, IDENTICAL, reproduction_table
    from gpt.sms import load_splits

    committed = tmp_path / "committed"
    E.run_experiment(committed, checkpoint=str(tiny_checkpoint), against="", **QUICK)
    rerun = tmp_path / "rerun"
    E.run_experiment(rerun, checkpoint=str(tiny_checkpoint), against=str(committed), **QUICK)
    text = (rerun / "comparison.md").read_text()
    assert text in capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| ") and "seeds" not in line]
    assert len(rows) == 3 and all(line.endswith(f"| {IDENTICAL} |") for line in rows), text
    # a changed run: the LoRA run's predictions flipped on a third of the balanced test messages
    path = rerun / "runs" / "lora-r2_seed0.json"
    doc = json.loads(path.read_text())
    flip = {"ham": "spam", "spam": "ham"}
    doc["metrics"]["test"]["predicted"] = [flip[p] if i % 3 == 0 else p for i, p in enumerate(doc["metrics"]["test"]["predicted"])]
    path.write_text(json.dumps(doc))
    table = reproduction_table(rerun, committed, load_splits()).set_index("strategy")
    assert table.loc["lora-r2", "verdict"] == DIFFERS and table.loc["lora-r2", "acc_high"] < 0
    assert table.loc["head", "verdict"] == IDENTICAL
    # another recipe is not paired with the committed one
    other = tmp_path / "other"
    E.run_experiment(other, checkpoint=str(tiny_checkpoint), against=str(committed), **{**QUICK, "strategies": ("head",), "epochs": 2})
    assert "other recipe (epochs 2 vs 1)" in (other / "comparison.md").read_text()


def test_same_within_noise_is_a_paired_test_on_the_same_messages(tmp_path, mirror_dir, monkeypatch):
    from gpt.experiments.compare import SAME_WITHIN_NOISE, reproduction_table
    from gpt.sms import load_splits

    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    splits = load_splits()
    truth = {k: list(splits[k]["label"]) for k in ("test", "test_natural")}

    def write(folder, wrong_every):
        (folder / "runs").mkdir(parents=True)
        flip = {"ham": "spam", "spam": "ham"}
        metrics = {k: {"predicted": [flip[t] if i % wrong_every == 0 else t for i, t in enumerate(v)]} for k, v in truth.items()}
        doc = {"config": {"strategy": "full", "seed": 0}, "metrics": metrics, "row": {"strategy": "full", "seed": 0}}
        (folder / "runs" / "full_seed0.json").write_text(json.dumps(doc))

    write(tmp_path / "a", 20)  # 95 % right
    write(tmp_path / "b", 21)  # one message in 21 wrong instead of one in 20: a few messages apart
    r = reproduction_table(tmp_path / "a", tmp_path / "b", splits).iloc[0]
    assert r["verdict"] == SAME_WITHIN_NOISE and r["acc_low"] < 0 < r["acc_high"], r.to_dict()


def test_runs_that_differ_only_in_how_they_compute_are_paired(tmp_path, mirror_dir, monkeypatch):
    """Padding and the attention implementation change rounding, not the recipe: such runs are compared,
    while a field of the recipe (the learning rate) makes them another recipe."""
    from gpt.experiments.compare import IDENTICAL, reproduction_table
    from gpt.sms import load_splits

    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    splits = load_splits()
    truth = {k: {"predicted": list(splits[k]["label"])} for k in ("test", "test_natural")}

    def write(folder, **config):
        (folder / "runs").mkdir(parents=True)
        doc = {"config": {"strategy": "full", "seed": 0, **config}, "metrics": truth, "row": {"strategy": "full", "seed": 0}}
        (folder / "runs" / "full_seed0.json").write_text(json.dumps(doc))

    write(tmp_path / "old")  # made before the fields existed
    write(tmp_path / "new", pad_to_multiple_of=16, attn_impl="auto")
    write(tmp_path / "other", pad_to_multiple_of=16, lr=1e-3)
    assert reproduction_table(tmp_path / "new", tmp_path / "old", splits).iloc[0]["verdict"] == IDENTICAL
    assert reproduction_table(tmp_path / "other", tmp_path / "old", splits).iloc[0]["verdict"] == "other recipe"


def test_rows_with_several_seeds_also_get_the_seed_level_interval(tmp_path, mirror_dir, monkeypatch):
    from gpt.experiments.compare import reproduction_markdown, reproduction_table
    from gpt.sms import load_splits

    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    splits = load_splits()
    flip = {"ham": "spam", "spam": "ham"}

    def write(folder, wrong_every):  # seed -> one message in wrong_every[seed] predicted wrong
        (folder / "runs").mkdir(parents=True)
        for seed, every in enumerate(wrong_every):
            metrics = {k: {"predicted": [flip[t] if i % every == 0 else t for i, t in enumerate(splits[k]["label"])]}
                       for k in ("test", "test_natural")}
            doc = {"config": {"strategy": "full", "seed": seed}, "metrics": metrics, "row": {"strategy": "full", "seed": seed}}
            (folder / "runs" / f"full_seed{seed}.json").write_text(json.dumps(doc))

    write(tmp_path / "a", [10, 20, 30])
    write(tmp_path / "b", [20, 10, 30])  # the same runs, two seeds swapped: no change in expectation
    r = reproduction_table(tmp_path / "a", tmp_path / "b", splits).iloc[0]
    assert r["seed_acc"] == pytest.approx(0.0, abs=1e-9) and r["seed_acc_low"] < 0 < r["seed_acc_high"]
    assert "over the 3 seeds: accuracy +0.0" in reproduction_markdown(reproduction_table(tmp_path / "a", tmp_path / "b", splits), tmp_path / "b")
