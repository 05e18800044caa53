"""Results files: rows, no silent overwrite, refusing foreign tables, atomic writes, summaries."""

import pandas as pd
import pytest

from gpt.experiments import results as R
from gpt.errors import OutputExistsError
from gpt.io.files import OutputError
from gpt.finetune import FinetuneResult, default_config


def fake_result(strategy="head", seed=0, acc=0.9, **config):
    metrics = {s: {"accuracy": acc, "precision": acc, "recall": acc, "f1": acc} for s in ("val", "test", "test_natural")}
    return FinetuneResult(
        config=default_config(strategy, seed=seed, **config), history={}, best_epoch=1, metrics=metrics,
        trainable_params=66, total_params=1000, wall_seconds=1.0, train_seconds=0.5, seconds_per_epoch=0.5,
        seconds_per_step=0.01, peak_memory_bytes=None, peak_memory_method="unavailable", optimizer_state_bytes=528,
        gradient_bytes=264, activation_bytes=100, truncated_messages={}, device="cpu", precision="fp32",
    )


def test_rows_summary_and_order(tmp_path):
    for strategy, seed, acc, cfg in (("lora", 0, 0.95, dict(r=2, lora_alpha=4.0)), ("head", 0, 0.9, {}), ("head", 1, 0.92, {})):
        res = fake_result(strategy, seed, acc, **cfg)
        R.write_result(tmp_path, R.result_row(res, {"command": "python -m gpt test"}), res)
    table = pd.read_csv(tmp_path / "results.csv")
    assert list(table.columns) == R.RESULT_COLUMNS
    assert list(zip(table["strategy"], table["seed"])) == [("head", 0), ("head", 1), ("lora-r2", 0)]
    assert table.loc[2, "r"] == 2 and table.loc[2, "lora_alpha"] == 4.0 and pd.isna(table.loc[0, "r"])
    summary = (tmp_path / "summary.md").read_text()
    assert "| head | 0 1 |" in summary and "91.0 ± 1.4" in summary and "python -m gpt test" in summary
    assert (tmp_path / "runs" / "lora-r2_seed0.json").exists()
    assert not [p for p in tmp_path.rglob(".*")], "no temporary file is left behind"


def test_strategy_order():
    names = ["baseline", "lora-r16", "head", "lora-r2", "full", "last-block"]
    assert sorted(names, key=R.strategy_order) == ["full", "last-block", "head", "lora-r2", "lora-r16", "baseline"]


def test_an_existing_row_is_replaced_only_with_overwrite(tmp_path):
    res = fake_result(acc=0.9)
    R.write_result(tmp_path, R.result_row(res), res)
    better = fake_result(acc=0.99)
    with pytest.raises(OutputExistsError, match="head seed 0.*--overwrite"):
        R.write_result(tmp_path, R.result_row(better), better)
    assert pd.read_csv(tmp_path / "results.csv")["test_accuracy"].tolist() == [0.9]
    R.write_result(tmp_path, R.result_row(better), better, overwrite=True)
    assert pd.read_csv(tmp_path / "results.csv")["test_accuracy"].tolist() == [0.99]


@pytest.mark.parametrize(
    "setup, error, phrase",
    [
        (lambda d: (d / "results.csv").write_text("name,score\nx,1\n"), OutputError, "not a results table"),
        (lambda d: (d / "results.csv").mkdir(), OutputError, "is a folder"),
        (lambda d: (d / "results.csv").write_bytes(b'strategy,seed\n"unclosed,1\n'), OutputError, "not a readable results table"),
    ],
)
def test_foreign_results_files_are_refused_before_training(tmp_path, setup, error, phrase):
    setup(tmp_path)
    with pytest.raises(error, match=phrase):
        R.check_results_dir(tmp_path, [("head", 0)])


def test_out_must_not_be_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        R.check_results_dir(tmp_path / "f", [("head", 0)])
