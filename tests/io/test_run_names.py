"""gpt.io.run_names: a run's name in result tables and files (FinetuneConfig.label is built from these)."""

from types import SimpleNamespace

import pytest

from gpt.errors import ConfigError
from gpt.io.run_names import TARGET_PRESETS, check_run_name, lora_label, lora_variant_suffix

PLAIN = dict(use_rslora=False, use_dora=False, init_lora_weights="kaiming", loraplus_lr_ratio=None, target_modules=None)


def variants(**changed):
    return SimpleNamespace(**{**PLAIN, **changed})


def test_plain_lora_keeps_its_short_name_and_each_variant_adds_a_suffix():
    assert lora_label(8) == "lora-r8" and lora_variant_suffix(variants()) == ""
    assert lora_variant_suffix(variants(use_rslora=True, use_dora=True, init_lora_weights="pissa", loraplus_lr_ratio=16.0)) == \
        "-rslora-dora-pissa-loraplus16"
    assert lora_variant_suffix(variants(target_modules=list(TARGET_PRESETS["qv"]))) == "-qv"  # a preset by its name
    assert lora_variant_suffix(variants(target_modules=["fc", "proj"])) == "-fc+proj"


@pytest.mark.parametrize("name", ["", "-x", ".x", "a b", "x_seed1", "é", "x" * 65, 3])
def test_a_name_that_cannot_name_files_is_refused(name):
    with pytest.raises(ConfigError, match=r"name \(--label\) must be 1 to 64 letters"):
        check_run_name(name)


def test_good_names_pass():
    for name in (None, "lora-r8", "my.run+2", "x" * 64):
        check_run_name(name)
