"""Adapter files: round trips onto a fresh base, nothing lost when saving, and a clear error (type +
message) for every bad adapter file or save call."""

import hashlib
import json
import math
import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

import gpt.io.adapter_files
from gpt.errors import ConfigError, OutputExistsError
from gpt.io.adapter_files import adapter_checksum
from gpt.io.adapters import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, AdapterError, load_adapter, read_adapter, save_adapter
from gpt.io.files import OutputError
from gpt.lora import apply_lora, count_lora_parameters, lora_layers, merge_lora, unmerge_lora
from gpt.model import GPT
from gpt.io.weights import load_model, save_model
from helpers_lora import BLOCK_LINEARS, C, TinyClassifier, lora_keys, lora_names, randomize_lora, tiny_gpt, token_ids

# ---------------------------------------------------------------------------------------------
# Adapter files: round trips


@pytest.fixture
def base_checkpoint(tmp_path):
    path = tmp_path / "base.safetensors"
    save_model(tiny_gpt(seed=0), path)
    return path


def with_head(model: GPT, seed: int) -> GPT:
    torch.manual_seed(seed)
    model.head = nn.Linear(C, 2)
    return model.eval()


@pytest.fixture
def adapter(tmp_path, base_checkpoint):
    """A saved adapter (LoRA factors + a trained head) of the base checkpoint: its folder."""
    model = apply_lora(with_head(load_model(base_checkpoint), seed=1), r=4, lora_alpha=8, train_head=True)
    randomize_lora(model)
    return save_adapter(model, tmp_path / "adapter", base_checkpoint=base_checkpoint)


def edit_config(folder: Path, sign: bool = True, **changes) -> None:
    """Rewrite the adapter's JSON with keys changed (a value of ``DROP`` deletes the key); with ``sign``, its
    checksum is recomputed (a file written wrong, not changed afterwards), so the check under test is reached."""
    config = json.loads((folder / ADAPTER_CONFIG_NAME).read_text())
    for k, v in changes.items():
        if v is DROP:
            config.pop(k, None)
        else:
            config[k] = v
    if sign and "checksum" in config:
        config["checksum"] = adapter_checksum({k: v for k, v in config.items() if k != "checksum"},
                                              load_file(str(folder / ADAPTER_WEIGHTS_NAME)))
    (folder / ADAPTER_CONFIG_NAME).write_text(json.dumps(config))


def edit_tensors(folder: Path, change, sync_config: bool = True) -> None:
    """Rewrite the adapter's tensors with ``change(tensors)`` applied; optionally keep the JSON's shape list in step."""
    tensors = load_file(str(folder / ADAPTER_WEIGHTS_NAME))
    change(tensors)
    save_file(tensors, str(folder / ADAPTER_WEIGHTS_NAME), metadata={"format": "gpt-course-lora"})
    if sync_config:
        edit_config(folder, tensors={k: list(v.shape) for k, v in tensors.items()})


DROP = object()


def test_adapter_round_trip_into_a_fresh_base_gives_identical_outputs(tmp_path, base_checkpoint):
    model = apply_lora(with_head(load_model(base_checkpoint), seed=1), r=4, lora_alpha=8, lora_dropout=0.1, train_head=True)
    randomize_lora(model)
    folder = save_adapter(model, tmp_path / "adapter", base_checkpoint=base_checkpoint, extra={"labels": ["ham", "spam"]})
    assert sorted(p.name for p in folder.iterdir()) == sorted([ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME])

    config = json.loads((folder / ADAPTER_CONFIG_NAME).read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8 and config["lora_dropout"] == 0.1
    assert config["target_modules"] == BLOCK_LINEARS
    assert config["modules_to_save"] == ["head"]
    assert config["base_model_sha256"] == hashlib.sha256(base_checkpoint.read_bytes()).hexdigest()
    assert config["gpt_config"] == model.config.to_dict()
    assert config["extra"] == {"labels": ["ham", "spam"]}
    stored = load_file(str(folder / ADAPTER_WEIGHTS_NAME))
    assert set(stored) == lora_keys(model) | {"head.weight", "head.bias"} == set(config["tensors"])

    fresh = with_head(load_model(base_checkpoint), seed=2)  # a different, untrained head
    load_adapter(fresh, folder, base_checkpoint=base_checkpoint)
    assert lora_names(fresh) == BLOCK_LINEARS
    assert {layer.lora_dropout_p for _, layer in lora_layers(fresh)} == {0.1}
    x = token_ids()
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
        assert torch.equal(fresh.head(fresh.hidden_states(x)), model.head(model.hidden_states(x)))
    assert count_lora_parameters(fresh) == count_lora_parameters(model)  # same parts trainable


def test_adapter_of_a_classifier_holding_a_gpt_round_trips(tmp_path):
    model = apply_lora(TinyClassifier(tiny_gpt(seed=0), seed=1).eval(), r=2, lora_alpha=4, train_head=True)
    assert lora_names(model) == ["gpt." + n for n in BLOCK_LINEARS] and model.lora_config.modules_to_save == ["head"]
    randomize_lora(model)
    folder = save_adapter(model, tmp_path / "adapter")
    assert json.loads((folder / ADAPTER_CONFIG_NAME).read_text())["gpt_config"] == model.gpt.config.to_dict()
    fresh = load_adapter(TinyClassifier(tiny_gpt(seed=0), seed=2).eval(), folder)
    x = token_ids()
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    with pytest.raises(AdapterError, match=r"n_head=2 \(the model has 4\)"):  # same shapes, another architecture
        load_adapter(TinyClassifier(tiny_gpt(seed=0, n_head=4)), folder)


def test_adapter_loads_across_runtime_only_config_fields(adapter, base_checkpoint):
    target = load_model(base_checkpoint, dropout=0.1, attn_impl="explicit")  # same weights, other runtime settings
    load_adapter(with_head(target, seed=3), adapter)
    assert lora_names(target) == BLOCK_LINEARS


def test_adapter_written_before_gpt_config_and_tensor_lists_still_loads(adapter, base_checkpoint):
    edit_config(adapter, gpt_config=None, tensors=DROP, lora_dropout=DROP, modules_to_save=DROP, checksum=DROP,
                base_weights_sha256=DROP, base_model_sha256=DROP, format_version=1)  # an older, sparser file
    with pytest.warns(UserWarning) as caught:
        target = load_adapter(with_head(load_model(base_checkpoint), seed=3), adapter)
    messages = [str(w.message) for w in caught]
    assert any(re.search(r"carries no checksum \(saved before adapters carried one \(format_version 1\)\): loaded unverified", m) for m in messages)
    assert any(re.search(r"records no sha256 of its base weights .*cannot be verified to be the base it was trained on", m) for m in messages)
    assert lora_names(target) == BLOCK_LINEARS
    assert not target.head.weight.requires_grad  # no modules_to_save recorded: only the factors train


def test_read_adapter_accepts_the_folder_or_either_of_its_files(adapter):
    for path in (adapter, adapter / ADAPTER_WEIGHTS_NAME, adapter / ADAPTER_CONFIG_NAME):
        config, tensors = read_adapter(path)
        assert config["r"] == 4 and "head.weight" in tensors


# ---------------------------------------------------------------------------------------------
# Adapter files: nothing lost


def test_saving_twice_needs_overwrite_and_then_replaces_the_files_completely(tmp_path, base_checkpoint):
    model = apply_lora(load_model(base_checkpoint), r=4, lora_alpha=8)
    randomize_lora(model, seed=1)
    folder = save_adapter(model, tmp_path / "adapter")
    first = (folder / ADAPTER_WEIGHTS_NAME).read_bytes()
    randomize_lora(model, seed=2)
    with pytest.raises(OutputExistsError, match=r"already exists; pass overwrite=True"):
        save_adapter(model, folder, extra={"v": 2})
    assert (folder / ADAPTER_WEIGHTS_NAME).read_bytes() == first  # untouched

    save_adapter(model, folder, extra={"v": 2}, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "base.safetensors"]  # no temporary folders left
    config, tensors = read_adapter(folder)
    assert config["extra"] == {"v": 2}
    assert set(tensors) == lora_keys(model)
    for name, layer in lora_layers(model):
        assert torch.equal(tensors[f"{name}.lora_B.weight"], layer.lora_B.weight), name


def test_overwrite_refuses_a_folder_that_holds_more_than_an_adapter(tmp_path):
    model = apply_lora(tiny_gpt(), r=2, lora_alpha=4)
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match=r"not part of an adapter \(\['notes.txt'\]\)"):
        save_adapter(model, folder, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("crash", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_crash_while_saving_keeps_the_previous_adapter_and_leaves_no_temporary_folder(tmp_path, monkeypatch, crash):
    model = apply_lora(tiny_gpt(), r=2, lora_alpha=4)
    randomize_lora(model, seed=1)
    out = tmp_path / "out"
    folder = save_adapter(model, out / "adapter")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def crashing_save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 10)  # half a file, then the crash
        raise crash

    monkeypatch.setattr(gpt.io.adapter_files, "save_file", crashing_save_file)
    randomize_lora(model, seed=2)
    with pytest.raises(type(crash)):
        save_adapter(model, folder, overwrite=True)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    with pytest.raises(type(crash)):
        save_adapter(model, out / "new")  # a fresh folder: both files appear together or not at all
    assert sorted(p.name for p in out.iterdir()) == ["adapter"]
    monkeypatch.undo()
    assert read_adapter(folder)[0]["r"] == 2


# ---------------------------------------------------------------------------------------------
# Bad saves


@pytest.mark.parametrize(
    "extra, phrase",
    [
        ({"path": Path("runs/x")}, r"extra is not JSON-serialisable \(Object of type PosixPath"),
        ({"metric": math.nan}, r"extra is not JSON-serialisable \(Out of range float"),
        ({"tensor": torch.zeros(1)}, r"extra is not JSON-serialisable \(Object of type Tensor"),
        (["labels"], r"extra must be a dict of JSON-serialisable metadata, got list"),
    ],
)
def test_save_with_extra_that_is_not_json_is_a_config_error_and_writes_nothing(tmp_path, extra, phrase):
    model = apply_lora(tiny_gpt(), r=2, lora_alpha=4)
    with pytest.raises(ConfigError, match=phrase):
        save_adapter(model, tmp_path / "adapter", extra=extra)
    assert list(tmp_path.iterdir()) == []


def test_save_without_lora_layers_is_an_error(tmp_path):
    with pytest.raises(AdapterError, match=r"no LoRA layers: nothing to save"):
        save_adapter(tiny_gpt(), tmp_path / "adapter")


def test_save_refuses_an_adapter_with_nan_or_inf_and_writes_nothing(tmp_path):
    model = apply_lora(tiny_gpt(), r=2, lora_alpha=4)
    with torch.no_grad():
        model.blocks[1].mlp.fc.lora_B.weight[0, 0] = math.inf
    with pytest.raises(AdapterError, match=r"'blocks.1.mlp.fc.lora_B.weight' holds NaN or inf \(training diverged\); nothing was saved"):
        save_adapter(model, tmp_path / "adapter")
    assert list(tmp_path.iterdir()) == []


def test_save_onto_a_file_or_with_a_bad_base_checkpoint_is_refused(tmp_path):
    model = apply_lora(tiny_gpt(), r=2, lora_alpha=4)
    a_file = tmp_path / "adapter"
    a_file.write_text("not a folder")
    with pytest.raises(OutputError, match=r"is a file, but a folder is to be written there"):
        save_adapter(model, a_file, overwrite=True)
    assert a_file.read_text() == "not a folder"
    with pytest.raises(AdapterError, match=r"'no/such/base.safetensors' is neither a file nor a sha256 digest"):
        save_adapter(model, tmp_path / "adapter2", base_checkpoint="no/such/base.safetensors")


# ---------------------------------------------------------------------------------------------
# Bad adapter files: AdapterError naming the file, the key or the tensor; the model is untouched


@pytest.mark.parametrize(
    "changes, phrase",
    [
        (dict(r=DROP), r"adapter_config.json lacks the key 'r'"),
        (dict(lora_alpha=DROP), r"adapter_config.json lacks the key 'lora_alpha'"),
        (dict(target_modules=DROP), r"adapter_config.json lacks the key 'target_modules'"),
        (dict(r=0), r"adapter_config.json: r \(the LoRA rank\) must be a whole number >= 1, got 0"),
        (dict(r="4"), r"adapter_config.json: r \(the LoRA rank\) must be a whole number >= 1, got '4'"),
        (dict(r=4.0), r"adapter_config.json: r \(the LoRA rank\) must be a whole number >= 1, got 4.0"),
        (dict(lora_alpha=-8), r"adapter_config.json: lora_alpha must be a finite number > 0, got -8"),
        (dict(lora_dropout=1.5), r"adapter_config.json: lora_dropout must be a finite number in \[0, 1\), got 1.5"),
        (dict(target_modules="blocks.0.attn.q_proj"), r"adapter_config.json: 'target_modules' must be a non-empty list"),
        (dict(target_modules=[]), r"adapter_config.json: 'target_modules' must be a non-empty list"),
        (dict(modules_to_save=[1]), r"adapter_config.json: 'modules_to_save' must be a list of distinct module names"),
        (dict(gpt_config="course-tiny"), r"adapter_config.json: 'gpt_config' must be a dict or null"),
        (dict(format=DROP), r"adapter_config.json is not a gpt-course-lora adapter config \(format=None\)"),
    ],
)
def test_adapter_config_with_a_missing_or_bad_key_is_refused(adapter, base_checkpoint, changes, phrase):
    edit_config(adapter, **changes)
    target = with_head(load_model(base_checkpoint), seed=3)
    with pytest.raises(AdapterError, match=phrase):
        load_adapter(target, adapter)
    assert lora_names(target) == []


@pytest.mark.parametrize(
    "damage, phrase",
    [
        (lambda f: (f / ADAPTER_CONFIG_NAME).write_text('{"r": 4, '), r"adapter_config.json is not valid JSON"),
        (lambda f: (f / ADAPTER_CONFIG_NAME).write_bytes(b"\xff\xfe\x00garbage"), r"adapter_config.json is not valid JSON"),
        (lambda f: (f / ADAPTER_CONFIG_NAME).write_text("[1, 2]"), r"adapter_config.json holds a JSON list, not an adapter config"),
        (lambda f: (f / ADAPTER_WEIGHTS_NAME).write_bytes((f / ADAPTER_WEIGHTS_NAME).read_bytes()[:-100]), r"adapter_model.safetensors is damaged"),
        (lambda f: (f / ADAPTER_WEIGHTS_NAME).write_bytes(b"garbage" * 20), r"adapter_model.safetensors is damaged"),
        (lambda f: (f / ADAPTER_WEIGHTS_NAME).write_bytes(b""), r"adapter_model.safetensors is damaged"),
        (lambda f: (f / ADAPTER_WEIGHTS_NAME).unlink(), r"adapter_model.safetensors does not exist: .* is not a complete adapter folder"),
        (lambda f: (f / ADAPTER_CONFIG_NAME).unlink(), r"adapter_config.json does not exist: .* is not a complete adapter folder"),
    ],
    ids=["truncated-json", "not-utf8-json", "json-list", "truncated-weights", "garbage-weights", "empty-weights", "no-weights", "no-config"],
)
def test_damaged_or_incomplete_adapter_files_are_refused_naming_the_file(adapter, base_checkpoint, damage, phrase):
    damage(adapter)
    target = with_head(load_model(base_checkpoint), seed=3)
    with pytest.raises(AdapterError, match=phrase):
        load_adapter(target, adapter)
    assert lora_names(target) == []


def test_a_path_that_is_no_adapter_is_refused(tmp_path, base_checkpoint):
    with pytest.raises(AdapterError, match=r"base.safetensors is a file, not an adapter; give the folder save_adapter wrote"):
        read_adapter(base_checkpoint)
    with pytest.raises(AdapterError, match=r"adapter folder .*missing does not exist"):
        read_adapter(tmp_path / "missing")
    with pytest.raises(AdapterError, match=r"adapter_config.json does not exist"):
        read_adapter(tmp_path)  # a folder, but not an adapter's


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_adapter_tensors_with_nan_or_inf_are_refused_naming_the_tensor(adapter, base_checkpoint, bad):
    edit_tensors(adapter, lambda t: t["blocks.0.attn.v_proj.lora_B.weight"].view(-1)[3].fill_(bad))
    target = with_head(load_model(base_checkpoint), seed=3)
    with pytest.raises(AdapterError, match=r"'blocks.0.attn.v_proj.lora_B.weight' in .*adapter_model.safetensors holds NaN or inf"):
        load_adapter(target, adapter)
    assert lora_names(target) == []


@pytest.mark.parametrize(
    "change, sync, phrase",
    [
        (lambda t: t.update({"head.weight": t["head.weight"].to(torch.int64)}), True, r"'head.weight' .* has dtype torch.int64"),
        (lambda t: t.pop("head.bias"), False, r"does not match .*adapter_config.json: tensor 'head.bias' has shape missing"),
        (lambda t: t.pop("head.bias"), True, r"adapter file lacks tensor 'head.bias'"),  # modules_to_save without its tensors
        (lambda t: t.pop("blocks.1.mlp.proj.lora_A.weight"), True, r"adapter file lacks tensor 'blocks.1.mlp.proj.lora_A.weight'"),
        (lambda t: t.update({"blocks.1.mlp.fc.lora_B.weight": torch.zeros(5, 4)}), True, r"'blocks\.1\.mlp\.fc\.lora_B\.weight' has shape \(5, 4\), the model expects \(128, 4\)"),
        (lambda t: t.update({"blocks.0.attn.q_proj.lora_C.weight": torch.zeros(2)}), True, r"'blocks.0.attn.q_proj.lora_C.weight' has no counterpart in this model"),
    ],
    ids=["int-dtype", "files-disagree", "head-tensor-missing", "factor-missing", "mis-shaped", "unexpected-key"],
)
def test_adapter_tensors_that_do_not_fit_are_refused_naming_the_tensor(adapter, base_checkpoint, change, sync, phrase):
    edit_tensors(adapter, change, sync_config=sync)
    target = with_head(load_model(base_checkpoint), seed=3)
    with pytest.raises(AdapterError, match=phrase):
        load_adapter(target, adapter)
    assert lora_names(target) == []


def test_adapter_on_a_different_base_is_refused(tmp_path, adapter):
    other = tmp_path / "other.safetensors"
    save_model(tiny_gpt(seed=5), other)
    target = with_head(load_model(other), seed=3)
    with pytest.raises(AdapterError, match=r"sha256 .*a different base model"):
        load_adapter(target, adapter, base_checkpoint=other)
    assert lora_names(target) == []  # nothing was changed


@pytest.mark.parametrize(
    "overrides, phrase",
    [
        (dict(n_embd=48), r"n_embd=32 \(the model has 48\)"),
        (dict(n_head=4), r"n_head=2 \(the model has 4\)"),
        (dict(qkv_bias=True), r"qkv_bias=False \(the model has True\)"),
    ],
)
def test_adapter_trained_on_another_architecture_is_refused(adapter, overrides, phrase):
    target = tiny_gpt(**overrides)
    with pytest.raises(AdapterError, match=rf"was trained on a model with {phrase}: another architecture"):
        load_adapter(target, adapter)
    assert lora_names(target) == []


def test_adapter_layers_the_model_lacks_are_refused(tmp_path, adapter, base_checkpoint):
    with pytest.raises(AdapterError, match=r"targets module 'head', which this model does not have"):
        load_adapter(load_model(base_checkpoint), adapter)  # modules_to_save=['head'], but no head here
    model = apply_lora(tiny_gpt(head=True), r=2, lora_alpha=4, target_modules=["q_proj", "head"])
    folder = save_adapter(model, tmp_path / "with-head-lora")
    target = tiny_gpt()
    with pytest.raises(AdapterError, match=r"targets module 'head', which this model does not have"):
        load_adapter(target, folder)
    assert lora_names(target) == []


def test_loading_into_mismatched_or_merged_lora_layers_is_refused(adapter, base_checkpoint):
    other_r = apply_lora(with_head(load_model(base_checkpoint), seed=3), r=2, lora_alpha=8, train_head=True)
    with pytest.raises(AdapterError, match=r"has r=2, lora_alpha=8; the adapter has r=4, lora_alpha=8"):
        load_adapter(other_r, adapter)
    fewer = apply_lora(with_head(load_model(base_checkpoint), seed=3), r=4, lora_alpha=8, target_modules="q_proj")
    with pytest.raises(AdapterError, match=r"the model's LoRA layers .* differ from the adapter's"):
        load_adapter(fewer, adapter)
    merged = merge_lora(apply_lora(with_head(load_model(base_checkpoint), seed=3), r=4, lora_alpha=8, train_head=True))
    with pytest.raises(AdapterError, match=r"is merged; call unmerge_lora\(model\) before loading"):
        load_adapter(merged, adapter)
    unmerge_lora(merged)
    load_adapter(merged, adapter)  # the same layers: only the tensors are copied
    assert torch.equal(merged.blocks[0].attn.q_proj.lora_B.weight, read_adapter(adapter)[1]["blocks.0.attn.q_proj.lora_B.weight"])


# ---------------------------------------------------------------------------------------------
# Another base, checksums, and the config against the weights (issue 23)


def test_adapter_on_another_base_is_refused_without_base_checkpoint_unless_allowed(tmp_path, adapter, base_checkpoint):
    other = tmp_path / "other.safetensors"
    save_model(tiny_gpt(seed=5), other)
    target = with_head(load_model(other), seed=3)
    saved = json.loads((adapter / ADAPTER_CONFIG_NAME).read_text())["base_weights_sha256"]
    with pytest.raises(AdapterError, match=rf"was trained on base weights \(those it leaves alone\), but this model's differ: sha256 {saved} at "
                                           r"save time, [0-9a-f]{64} here: a different base model.*pass allow_other_base=True"):
        load_adapter(target, adapter)  # no base_checkpoint: the recorded sha256 of the base weights tells
    assert lora_names(target) == []
    with pytest.warns(UserWarning, match=rf"sha256 {saved} at save time, [0-9a-f]{{64}} here: a different base.*loading it anyway \(allow_other_base=True\)"):
        load_adapter(target, adapter, allow_other_base=True)
    assert lora_names(target) == BLOCK_LINEARS
    with pytest.raises(ConfigError, match=r"allow_other_base must be True or False, got 'yes'"):
        load_adapter(with_head(load_model(other), seed=3), adapter, allow_other_base="yes")


def test_the_same_base_loads_without_a_warning_in_bfloat16_and_after_merge_unmerge(adapter, base_checkpoint):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_adapter(with_head(load_model(base_checkpoint), seed=3).to(torch.bfloat16), adapter)  # the same base, rounded
        merged = merge_lora(apply_lora(with_head(load_model(base_checkpoint), seed=3), r=4, lora_alpha=8, train_head=True))
        load_adapter(unmerge_lora(merged), adapter)  # the wrapped weights, changed by rounding, are not part of the sha256


def test_a_bit_flip_in_the_adapter_weights_is_refused_naming_the_file(adapter, base_checkpoint):
    raw = bytearray((adapter / ADAPTER_WEIGHTS_NAME).read_bytes())
    raw[-3] ^= 0x01  # one bit of the last tensor's data: still a valid safetensors file, still finite
    (adapter / ADAPTER_WEIGHTS_NAME).write_bytes(bytes(raw))
    target = with_head(load_model(base_checkpoint), seed=3)
    with pytest.raises(AdapterError, match=r"adapter_model.safetensors was changed after it was saved: its tensors have sha256 [0-9a-f]{64}, but "
                                           r"the adapter's checksum records [0-9a-f]{64} .*restore the adapter from a copy or save it again"):
        load_adapter(target, adapter)
    assert lora_names(target) == []


@pytest.mark.parametrize("changes", [dict(lora_alpha=400), dict(lora_alpha=4.0000001), dict(use_rslora=True), dict(extra={"labels": ["x"]})])
def test_an_edited_adapter_config_is_refused_by_its_checksum(adapter, base_checkpoint, changes):
    edit_config(adapter, sign=False, **changes)  # each a valid value: only the checksum can tell
    target = with_head(load_model(base_checkpoint), seed=3)
    with pytest.raises(AdapterError, match=r"adapter_config.json was changed after it was saved: its content has sha256 [0-9a-f]{64}, but the "
                                           r"adapter's checksum records [0-9a-f]{64} \(an edited value such as lora_alpha"):
        load_adapter(target, adapter)
    assert lora_names(target) == []


def test_a_removed_checksum_is_refused(adapter):
    edit_config(adapter, checksum=DROP)
    with pytest.raises(AdapterError, match=r"adapter_config.json has no 'checksum', but a format_version 2 adapter carries one"):
        read_adapter(adapter)


@pytest.mark.parametrize("r, key, shape", [(2, "blocks.0.attn.q_proj.lora_A.weight", r"\[4, 32\]"), (8, "blocks.0.attn.q_proj.lora_A.weight", r"\[4, 32\]")])
def test_an_r_that_disagrees_with_the_factors_is_refused(adapter, r, key, shape):
    edit_config(adapter, r=r)  # even with a checksum that matches (a file written wrong)
    with pytest.raises(AdapterError, match=rf"adapter_config.json says r={r}, but adapter_model.safetensors holds '{key}' of shape {shape}"):
        read_adapter(adapter)
