"""The headline experiment command: its run list, a tiny end-to-end run, resuming, the plot."""

import pandas as pd
import pytest
import torch

from gpt import classify as C
from gpt import experiment as E
from gpt.model import GPT, GPTConfig
from gpt.train import save_model

TINY = dict(vocab_size=4096, context_length=64, n_layer=1, n_head=2, n_embd=32)


def test_experiment_runs_cover_the_issue():
    labels = [label for label, _ in E.experiment_runs()]
    assert labels == ["full", "last-block", "head"] + [f"lora-r{r}" for r in (1, 2, 4, 8, 16, 32)] + ["baseline"]
    args = dict(E.experiment_runs())["lora-r16"]
    assert args[args.index("--rank") + 1] == "16" and float(args[args.index("--alpha") + 1]) == 32.0
    with pytest.raises(ValueError, match="unknown strategy"):
        E.experiment_runs(strategies=("lora", "prefix-tuning"))


def test_tiny_experiment_end_to_end_and_resume(mirror_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    monkeypatch.setenv("GPT_DATA_DIR", str(tmp_path / "data"))
    ckpt = tmp_path / "tiny.safetensors"
    torch.manual_seed(0)
    save_model(GPT(GPTConfig(**TINY)), ckpt)
    out = tmp_path / "results"
    csv = E.run_experiment(out, seeds=(0,), strategies=("head", "lora"), ranks=(1, 4), checkpoint=str(ckpt), epochs=1,
                           command="python -m gpt experiment --test")
    table = pd.read_csv(csv)
    assert list(table["strategy"]) == ["head", "lora-r1", "lora-r4"]
    assert (table["command"] == "python -m gpt experiment --test").all()
    assert table.set_index("strategy").loc["lora-r4", "trainable_params"] > table.set_index("strategy").loc["lora-r1", "trainable_params"]
    assert (out / "accuracy_vs_params.png").stat().st_size > 10_000
    assert "| lora-r4 |" in (out / "summary.md").read_text()
    # resume: nothing left to do, nothing rerun
    capsys.readouterr()
    E.run_experiment(out, seeds=(0,), strategies=("head", "lora"), ranks=(1, 4), checkpoint=str(ckpt), epochs=1, skip_existing=True)
    assert "0 runs to do" in capsys.readouterr().out
    assert pd.read_csv(csv)["date"].tolist() == table["date"].tolist()


def test_plot_accuracy_vs_params_from_a_table():
    rows = []
    for strategy, params, accs in (("full", 2_600_000, [0.95, 0.96]), ("lora-r8", 110_978, [0.96, 0.97]), ("baseline", 14_000, [0.955, 0.958])):
        for seed, a in enumerate(accs):
            row = {c: 0 for c in C.RESULT_COLUMNS}
            row.update(strategy=strategy, seed=seed, trainable_params=params, total_params=2_700_000, test_accuracy=a)
            rows.append(row)
    ax = E.plot_accuracy_vs_params(pd.DataFrame(rows))
    assert ax.get_xscale() == "log" and len(ax.get_lines()) >= 2
