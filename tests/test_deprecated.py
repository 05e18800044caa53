"""The old flat import paths still work for one release, each with a DeprecationWarning naming the new path."""

import importlib
import sys

import pytest

from gpt.deprecated import ALSO, MOVED, MOVED_NAMES


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
    from gpt.io.adapters import load_adapter, save_adapter  # noqa: F401
    from gpt.lora import apply_lora, lora_plus_param_groups  # noqa: F401
    from gpt.model import GPT
    from gpt.io.weights import load_model, read_checkpoint, save_model  # noqa: F401
    from gpt.train import evaluate, lr_at, pretrain, train_step  # noqa: F401
    from gpt.train_config import TrainConfig  # noqa: F401

    sys.modules.pop("gpt.hf", None)
    with pytest.warns(DeprecationWarning):
        hf = importlib.import_module("gpt.hf")
    assert hf.from_pretrained == GPT.from_pretrained


@pytest.mark.parametrize("old, new, name", [(old, new, name) for old, (new, names) in sorted(MOVED_NAMES.items()) for name in names])
def test_a_moved_name_warns_and_hands_on_its_new_home(old, new, name):
    with pytest.warns(DeprecationWarning, match=f"{old}.{name} is deprecated .* from {new} import {name}"):
        value = getattr(importlib.import_module(old), name)
    assert value is getattr(importlib.import_module(new), name)


def test_from_gpt_lora_import_save_adapter_warns_and_a_typo_stays_an_attribute_error():
    import gpt.io.adapters
    import gpt.lora

    with pytest.warns(DeprecationWarning, match="gpt.lora.save_adapter is deprecated"):
        from gpt.lora import save_adapter
    assert save_adapter is gpt.io.adapters.save_adapter
    with pytest.raises(AttributeError, match="has no attribute 'load_adapters'"):
        gpt.lora.load_adapters  # noqa: B018  (a typo is still an AttributeError)


def test_gpt_lora_adapters_is_a_deprecated_path_to_gpt_io_adapters():
    import gpt.io.adapters

    sys.modules.pop("gpt.lora.adapters", None)
    with pytest.warns(DeprecationWarning, match="gpt.lora.adapters is deprecated .* import gpt.io.adapters"):
        old = importlib.import_module("gpt.lora.adapters")
    assert old.save_adapter is gpt.io.adapters.save_adapter and old.load_adapter is gpt.io.adapters.load_adapter
