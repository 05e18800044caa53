"""gpt.experiments.compare: intervals and paired verdicts computed from the runs' stored predictions."""

import json

import numpy as np
import pandas as pd
import pytest

from gpt.experiments.compare import comparison_markdown, comparison_table, load_outcomes


def _splits(n_test=200, n_nat=300, seed=0):
    rng = np.random.default_rng(seed)
    test = pd.DataFrame({"label": np.where(np.arange(n_test) % 2 == 0, "spam", "ham"), "text": "x"})
    nat = pd.DataFrame({"label": np.where(rng.random(n_nat) < 0.15, "spam", "ham"), "text": "x"})
    return {"test": test, "test_natural": nat}


def _write_run(out, strategy, seed, splits, error_rate, rng):
    metrics = {}
    for split in ("test", "test_natural"):
        truth = splits[split]["label"].to_numpy()
        flip = rng.random(len(truth)) < error_rate
        metrics[split] = {"predicted": np.where(flip, np.where(truth == "spam", "ham", "spam"), truth).tolist()}
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "runs" / f"{strategy}_seed{seed}.json").write_text(json.dumps({"metrics": metrics, "row": {"strategy": strategy, "seed": seed}}))


@pytest.fixture
def results(tmp_path):
    splits = _splits()
    rng = np.random.default_rng(1)
    for seed in range(3):
        _write_run(tmp_path, "full", seed, splits, 0.02, rng)
        _write_run(tmp_path, "head", seed, splits, 0.25, rng)
        _write_run(tmp_path, "baseline", seed, splits, 0.05, rng)
    return tmp_path, splits


def test_outcomes_are_seeds_by_messages(results):
    out, splits = results
    o = load_outcomes(out, splits)
    assert sorted(o) == ["baseline", "full", "head"]
    assert o["full"]["test"].shape == (3, 200) and o["full"]["test_natural"].shape == (3, 300)
    assert sorted(o["head"]["seeds"]) == [0, 1, 2]


def test_runs_without_predictions_are_skipped_and_named(results):
    out, splits = results
    (out / "runs" / "lora-r8_seed0.json").write_text(json.dumps({"metrics": {"test": {"accuracy": 0.9}}, "row": {"strategy": "lora-r8", "seed": 0}}))
    o = load_outcomes(out, splits)
    assert "lora-r8" not in o and o["skipped"] == ["lora-r8_seed0.json"]


def test_table_accuracy_intervals_and_verdicts(results):
    out, splits = results
    t = comparison_table(out, splits).set_index("strategy")
    o = load_outcomes(out, splits)
    assert t.loc["full", "accuracy"] == pytest.approx((o["full"]["test"] == splits["test"]["label"].to_numpy()).mean())
    for s in t.index:
        assert t.loc[s, "accuracy_low"] <= t.loc[s, "accuracy"] <= t.loc[s, "accuracy_high"]
    assert t.loc["head", "acc_vs_baseline_verdict"] == "worse" and t.loc["head", "acc_vs_full_verdict"] == "worse"
    assert t.loc["full", "acc_vs_baseline_verdict"] == "better"
    assert t.loc["head", "f1_vs_baseline_verdict"] == "worse"
    assert np.isnan(t.loc["baseline", "acc_vs_baseline"])  # not compared with itself


def test_markdown_section(results):
    out, splits = results
    md = comparison_markdown(out, splits)
    assert md.startswith("## How sure are these numbers?")
    assert "| head |" in md and "worse: " in md and "McNemar" in md


def test_against_another_folder_pairs_the_same_strategy(results, tmp_path):
    from gpt.experiments.compare import against_markdown, against_table

    out, splits = results
    other = tmp_path / "other"
    rng = np.random.default_rng(5)
    for seed in range(3):
        _write_run(other, "full", seed, splits, 0.20, rng)  # the same strategy, much worse
    t = against_table(out, other, splits)
    assert list(t["strategy"]) == ["full"]  # only the strategies both folders hold
    assert t.loc[0, "acc_verdict"] == "better" and t.loc[0, "acc"] > 0.1
    assert "| full | better: +" in against_markdown(out, other, splits)


def test_display_table_shows_intervals_and_verdicts(results):
    from gpt.experiments.compare import display_table

    out, splits = results
    d = display_table(comparison_table(out, splits))
    assert list(d.index) == ["baseline", "full", "head"] or set(d.index) == {"baseline", "full", "head"}
    assert d.loc["head", "vs bag of words"].startswith("worse (-") and d.loc["baseline", "vs bag of words"] == "–"
    assert "[" in d.loc["full", "balanced test accuracy % [95 % interval]"]


def test_prior_correction_moves_the_threshold_by_the_prior_odds():
    from gpt.experiments.compare import prior_corrected

    p = np.array([0.5, 0.8, 0.86, 0.87, 0.99])
    # balanced training, 13.4 % spam at deployment: spam needs odds above (0.866 / 0.134) = 6.46, i.e. p > 0.866
    assert prior_corrected(p, 0.134).tolist() == [0, 0, 0, 1, 1]
    assert prior_corrected(p, 0.5).tolist() == [0, 1, 1, 1, 1]  # no shift: odds above 1


def test_prior_correction_only_for_models_trained_on_balanced_classes(results):
    out, splits = results
    for seed in range(2):
        doc = {"metrics": {s: {"predicted": splits[s]["label"].tolist(), "spam_probability": [0.5] * len(splits[s])}
                           for s in ("test", "test_natural")}, "row": {"strategy": "natural", "seed": seed},
               "config": {"train_split": "train_natural", "class_weight": None}}
        (out / "runs" / f"natural_seed{seed}.json").write_text(json.dumps(doc))
        doc["row"]["strategy"], doc["config"]["class_weight"] = "weighted", "balanced"
        (out / "runs" / f"weighted_seed{seed}.json").write_text(json.dumps(doc))
    outcomes = load_outcomes(out, splits)
    assert "natural_prob" not in outcomes["natural"] and "natural_prob" in outcomes["weighted"]


def test_kfold_summary_pools_every_fold(tmp_path, monkeypatch):
    import gpt.experiments.compare
    from gpt.experiments.compare import kfold_markdown, kfold_outcomes

    folds = {i: _splits(n_test=100 + 2 * i, n_nat=150 + i, seed=i) for i in range(3)}
    monkeypatch.setattr(gpt.experiments.compare, "kfold_splits", lambda k, i: folds[i])
    rng = np.random.default_rng(2)
    for i in range(3):
        for seed in range(2):
            _write_run(tmp_path / f"fold{i}", "full", seed, folds[i], 0.02, rng)
            _write_run(tmp_path / f"fold{i}", "baseline", seed, folds[i], 0.10, rng)
        if i < 2:
            _write_run(tmp_path / f"fold{i}", "head", 0, folds[i], 0.2, rng)  # missing from fold 2: not pooled
    outcomes, truth, y_nat, sizes = kfold_outcomes(tmp_path, 3)
    assert sizes["test"] == 306 and sizes["test_natural"] == 453 and sizes["incomplete"] == ["head"]
    assert outcomes["full"]["test"].shape == (2, 306) and list(truth[:100]) == list(folds[0]["test"]["label"])
    text = kfold_markdown(tmp_path, 3)
    assert "306 balanced, 453 natural" in text and "| full |" in text and "Not pooled" in text and "head" in text
    assert "| baseline |" in text and ("better" in text.split("| full |")[1].split("\n")[0])


def test_ablation_table_pairs_each_change_with_the_reference(results, tmp_path_factory):
    from gpt.experiments.compare import ablation_markdown, ablation_table, display_ablation

    out, splits = results
    better = tmp_path_factory.mktemp("better")
    rng = np.random.default_rng(5)
    for seed in range(3):
        _write_run(better, "full", seed, splits, 0.002, rng)
        _write_run(better, "head", seed, splits, 0.02, rng)  # head: much better than the reference's head (0.25 errors)
    t = ablation_table(out, {"cleaner": better}, splits, strategies=("full", "head", "baseline"))
    assert list(zip(t["change"], t["strategy"])) == [("reference", "full"), ("reference", "head"), ("reference", "baseline"),
                                                      ("cleaner", "full"), ("cleaner", "head")]  # no baseline in `better`
    head = t.set_index(["change", "strategy"]).loc[("cleaner", "head")]
    assert head["acc_vs_reference_verdict"] == "better" and head["acc_vs_reference"] > 0.15
    shown = display_ablation(t)
    assert shown.loc[("cleaner", "head"), "vs reference recipe"].startswith("better (+") and shown.loc[("reference", "full"), "vs reference recipe"] == "–"
    text = ablation_markdown(t, {"cleaner": "a cleaner recipe"})
    assert "| a cleaner recipe | head | 3 |" in text and "better: +" in text


def test_run_intervals_of_one_run():
    from gpt.experiments.compare import run_intervals

    splits = _splits(n_test=100, n_nat=200)
    truth = splits["test"]["label"].tolist()
    predicted = truth[:90] + ["spam" if t == "ham" else "ham" for t in truth[90:]]  # 90 % right
    nat = splits["test_natural"]["label"].tolist()
    out = run_intervals({"test": {"predicted": predicted}, "test_natural": {"predicted": nat}}, splits)
    acc, rest = out["accuracy"].split(" [")
    low, high = map(float, rest.rstrip("]").split("–"))
    assert acc == "90.0" and low < 90 < high and high - low > 5  # 100 messages: an interval several points wide
    assert out["natural_f1"] == "100.0 [100.0–100.0]"
