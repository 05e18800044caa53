"""The old flat import paths still work for one release, each with a DeprecationWarning naming the new path."""

import importlib
import sys

import pytest

from gpt.deprecated import ALSO, MOVED


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_an_old_path_warns_and_hands_on_the_new_module(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated .* import {new}"):
        module = importlib.import_module(old)
    target = importlib.import_module(new)
    public = [n for n in vars(target) if not n.startswith("_")]
    assert public and all(getattr(module, n) is getattr(target, n) for n in public)
    for name in ALSO.get(old, {}):
        assert callable(getattr(module, name))


def test_documented_names_keep_working():
    from gpt.lora import apply_lora, load_adapter, lora_plus_param_groups, save_adapter  # noqa: F401
    from gpt.model import GPT
    from gpt.io.weights import load_model, read_checkpoint, save_model  # noqa: F401
    from gpt.train import evaluate, lr_at, pretrain, train_step  # noqa: F401
    from gpt.train_config import TrainConfig  # noqa: F401

    sys.modules.pop("gpt.hf", None)
    with pytest.warns(DeprecationWarning):
        hf = importlib.import_module("gpt.hf")
    assert hf.from_pretrained == GPT.from_pretrained
