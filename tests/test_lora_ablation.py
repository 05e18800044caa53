"""The LoRA variants suite: its configurations, their labels, and the command line that runs each one."""

import argparse

import pytest

from gpt import experiment as E
from gpt.errors import ConfigError
from gpt.lora_ablation import REFERENCE, VARIANT_CONFIGS, variant_configs, variant_runs


def _parser():
    p = argparse.ArgumentParser()
    E.register_cli(p.add_subparsers(dest="command"))
    return p


def test_every_configuration_has_its_own_label_and_the_reference_is_plain_lora():
    labels = [label for label, _ in variant_runs()]
    assert len(labels) == len(set(labels)) == len(VARIANT_CONFIGS) == 10
    assert labels[0] == REFERENCE == "lora-r8"
    assert {"lora-r8-rslora", "lora-r8-dora", "lora-r8-loraplus16", "lora-r8-pissa", "lora-r32", "lora-r32-rslora",
            "lora-r8-qv", "lora-r8-attn", "lora-r8-mlp"} <= set(labels)
    assert all(c.lora_alpha == 16.0 for _, c in variant_configs())


@pytest.mark.parametrize("label, args", variant_runs())
def test_the_finetune_command_line_of_each_run_builds_its_config(label, args):
    parsed = _parser().parse_args(["finetune", *args, "--seeds", "0"])
    [config] = E._configs(parsed)
    assert config.label == label
    again = _parser().parse_args(E._forwarded_args(parsed) + ["--seeds", "0"])  # what a child process gets
    assert E._configs(again)[0] == config


def test_suite_variants_refuses_the_headline_options():
    args = _parser().parse_args(["experiment", "--suite", "variants", "--strategies", "full"])
    with pytest.raises(ConfigError, match="--strategies does not apply"):
        E._cmd_variants(args, "python -m gpt experiment --suite variants --strategies full")
