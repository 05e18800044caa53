"""The LoRA variants suite: its configurations, their labels, and the command line that runs each one."""

import argparse
import json

import pytest

from gpt.cli import finetune as CLI
from gpt.experiments import runner as E
from gpt.errors import ConfigError
from gpt.experiments.ablations import REFERENCE, VARIANT_CONFIGS, variant_configs, variant_runs


def _parser():
    p = argparse.ArgumentParser()
    CLI.register(p.add_subparsers(dest="command"))
    return p


def test_every_configuration_has_its_own_label_and_the_reference_is_plain_lora():
    labels = [label for label, _ in variant_runs()]
    assert len(labels) == len(set(labels)) == len(VARIANT_CONFIGS) == 10
    assert labels[0] == REFERENCE == "lora-r8"
    assert {"lora-r8-rslora", "lora-r8-dora", "lora-r8-loraplus16", "lora-r8-pissa", "lora-r32", "lora-r32-rslora",
            "lora-r8-qv", "lora-r8-attn", "lora-r8-mlp"} <= set(labels)
    assert all(c.lora_alpha == 16.0 for _, c in variant_configs())


@pytest.mark.parametrize("label, overrides", variant_runs())
def test_each_run_builds_its_config_and_travels_to_a_child_as_json(label, overrides):
    config = E.ExperimentConfig(runs=((label, overrides),)).run_config(overrides, seed=0)
    assert config.label == label
    job = json.loads(json.dumps(E.finetune_job(config, "out")))  # what a child process gets
    assert E.FinetuneConfig.from_dict(job["config"]) == config


def test_the_finetune_flags_build_the_same_config_as_the_suite():
    parsed = _parser().parse_args(["finetune", "--strategy", "lora", "--rank", "8", "--alpha", "16", "--use-dora",
                                   "--target-modules", "q_proj", "v_proj", "--seeds", "0"])
    [config] = CLI.configs_from_flags(parsed)
    assert (config.r, config.lora_alpha, config.use_dora, config.target_modules) == (8, 16.0, True, ("q_proj", "v_proj"))
    with pytest.raises(ConfigError, match="--rank does not apply"):
        CLI.configs_from_flags(_parser().parse_args(["finetune", "--strategy", "full", "--rank", "8"]))


def test_suite_variants_refuses_the_headline_options():
    args = _parser().parse_args(["experiment", "--suite", "variants", "--strategies", "full"])
    with pytest.raises(ConfigError, match="--strategies does not apply"):
        CLI._cmd_variants(args, "python -m gpt experiment --suite variants --strategies full")


def test_versus_table_pairs_every_configuration_with_plain_lora(tmp_path):
    import json

    import numpy as np
    import pandas as pd

    from gpt.experiments.ablations import versus_markdown, versus_table

    rng = np.random.default_rng(0)
    splits = {"test": pd.DataFrame({"label": np.where(np.arange(200) % 2 == 0, "spam", "ham"), "text": "x"}),
              "test_natural": pd.DataFrame({"label": np.where(rng.random(300) < 0.15, "spam", "ham"), "text": "x"})}
    (tmp_path / "runs").mkdir()
    for label, error in (("lora-r8", 0.05), ("lora-r8-dora", 0.05), ("lora-r8-qv", 0.40)):
        for seed in range(3):
            metrics = {}
            for split in ("test", "test_natural"):
                truth = splits[split]["label"].to_numpy()
                flip = rng.random(len(truth)) < error
                metrics[split] = {"predicted": np.where(flip, np.where(truth == "spam", "ham", "spam"), truth).tolist()}
            (tmp_path / "runs" / f"{label}_seed{seed}.json").write_text(json.dumps({"metrics": metrics, "row": {"strategy": label, "seed": seed}}))
    t = versus_table(tmp_path, splits).set_index("strategy")
    assert list(t.index) == ["lora-r8", "lora-r8-dora", "lora-r8-qv"]  # the suite's order
    assert not isinstance(t.loc["lora-r8", "acc_vs_ref_verdict"], str)  # the reference is not paired with itself
    assert t.loc["lora-r8-dora", "acc_vs_ref_verdict"] == "no detectable difference"
    assert t.loc["lora-r8-qv", "acc_vs_ref_verdict"] == "worse" and t.loc["lora-r8-qv", "acc_vs_ref_high"] < 0
    text = versus_markdown(tmp_path, splits)
    assert "| DoRA | lora-r8-dora |" in text and "| query + value only | lora-r8-qv |" in text
