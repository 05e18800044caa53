"""LoRA: frozen base, exact start, merge/unmerge, disable, counting, state-dict and adapter round trips,
and a clear error (type + message) for every bad argument and every bad adapter file."""

import copy
import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import gpt.lora
from gpt.errors import ConfigError, GPTError, OutputExistsError
from gpt.files import OutputError
from gpt.lora import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_WEIGHTS_NAME,
    AdapterError,
    LoRALinear,
    apply_lora,
    count_lora_parameters,
    disable_lora,
    load_adapter,
    lora_layers,
    merge_lora,
    read_adapter,
    save_adapter,
    unmerge_lora,
)
from gpt.model import GPT, MLP, GPTConfig, count_parameters
from gpt.train import lm_loss, load_model, make_optimizer, save_model

C = 32  # course-tiny's n_embd
N_LAYER = 2


def tiny_gpt(seed: int = 0, head: bool = False, **overrides) -> GPT:
    """course-tiny (2 layers, width 32) with a short context; optionally a 2-class ``head`` outside the blocks."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig.from_preset("course-tiny", context_length=16, **overrides))
    if head:
        model.head = nn.Linear(C, 2)
    return model.eval()


class TinyClassifier(nn.Module):
    """A classifier-like model: a GPT (``self.gpt``, holding the config) plus a ``head`` on the last token."""

    def __init__(self, gpt_model: GPT, seed: int = 0):
        super().__init__()
        self.gpt = gpt_model
        torch.manual_seed(seed)
        self.head = nn.Linear(C, 2)

    def forward(self, idx):
        return self.head(self.gpt.hidden_states(idx)[:, -1])  # (B, 2)


def token_ids(seed: int = 0, batch: int = 2, T: int = 12) -> torch.Tensor:
    return torch.randint(0, 4096, (batch, T), generator=torch.Generator().manual_seed(seed))


def randomize_lora(model, seed: int = 1, std: float = 0.1) -> None:
    """Stand-in for training: give every adapter a non-zero B (and a new A), so ΔW != 0."""
    g = torch.Generator().manual_seed(seed)
    assert list(lora_layers(model)), "randomize_lora needs a model with LoRA layers"
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_A.weight.copy_(torch.randn(layer.lora_A.weight.shape, generator=g) * std)
            layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=g) * std)


def lora_names(model) -> list[str]:
    return [name for name, _ in lora_layers(model)]


def lora_keys(model) -> set[str]:
    return {f"{n}.lora_{ab}.weight" for n in lora_names(model) for ab in "AB"}


BLOCK_LINEARS = [f"blocks.{i}.{n}" for i in range(N_LAYER) for n in ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj", "mlp.fc", "mlp.proj")]


# ---------------------------------------------------------------------------------------------
# The layer and the frozen base


def test_fresh_lora_model_gives_exactly_the_base_logits():
    base = tiny_gpt()
    model = apply_lora(copy.deepcopy(base), r=4, lora_alpha=8)
    assert lora_names(model) == BLOCK_LINEARS  # (the all() below would pass vacuously on no layers)
    x = token_ids()
    assert all(torch.count_nonzero(layer.lora_A.weight) > 0 for _, layer in lora_layers(model))  # A random, B zero
    assert all(torch.count_nonzero(layer.lora_B.weight) == 0 for _, layer in lora_layers(model))
    with torch.no_grad():
        assert torch.equal(model(x), base(x))


def test_optimizer_step_changes_only_the_lora_factors():
    model = apply_lora(tiny_gpt(), r=4, lora_alpha=8)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert set(lora) == lora_keys(model) and len(lora) == 2 * len(BLOCK_LINEARS)
    assert "blocks.0.attn.q_proj.weight" in frozen and "tok_emb.weight" in frozen
    opt = make_optimizer(model, lr=1e-2, weight_decay=0.0)
    model.train()
    x = token_ids(0, T=13)
    for _ in range(2):  # step 1 moves B (A's gradient is 0 while B = 0); step 2 moves A too
        loss = lm_loss(model, x[:, :-1], x[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    params = dict(model.named_parameters())
    for n, before in frozen.items():
        assert params[n].grad is None, n
        assert torch.equal(params[n], before), f"frozen {n} changed"
    for n, before in lora.items():
        assert not torch.equal(params[n], before), f"LoRA parameter {n} did not change"


def test_lora_linear_computes_x_w_plus_scaled_low_rank_update():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    layer = LoRALinear(base, r=2, lora_alpha=3.0)
    nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(4, 6)
    A, B = layer.lora_A.weight, layer.lora_B.weight  # (r, in), (out, r)
    assert A.shape == (2, 6) and B.shape == (5, 2)
    assert (layer.r, layer.lora_alpha, layer.scaling, layer.lora_dropout_p) == (2, 3.0, 1.5, 0.0)
    expected = x @ base.weight.T + base.bias + 1.5 * (x @ A.T @ B.T)
    torch.testing.assert_close(layer(x), expected)
    assert layer.weight is base.weight and not layer.weight.requires_grad
    assert set(layer.state_dict()) == {"weight", "bias", "lora_A.weight", "lora_B.weight"}


def test_lora_linear_names_follow_peft_in_attributes_and_repr():
    layer = LoRALinear(nn.Linear(6, 5), r=4, lora_alpha=2, lora_dropout=0.25)
    assert isinstance(layer.lora_dropout, nn.Dropout) and layer.lora_dropout.p == 0.25 and layer.lora_dropout_p == 0.25
    assert "r=4, lora_alpha=2, scaling=0.5, lora_dropout=0.25" in repr(layer)
    for old in ("rank", "alpha", "scale", "dropout_p"):  # the duplicate vocabulary is gone
        assert not hasattr(layer, old), old
    assert isinstance(LoRALinear(nn.Linear(6, 5), r=4, lora_alpha=2).lora_dropout, nn.Identity)


def test_lora_dropout_only_while_training():
    model = apply_lora(tiny_gpt(), r=4, lora_alpha=8, lora_dropout=0.5)
    assert {layer.lora_dropout_p for _, layer in lora_layers(model)} == {0.5}
    randomize_lora(model)
    x = token_ids()
    assert not any(layer.training for _, layer in lora_layers(model))  # wrapped inside an eval() model
    with torch.no_grad():
        model.train()
        assert not torch.equal(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))


# ---------------------------------------------------------------------------------------------
# Merge, unmerge, disable


def test_merge_adds_scaled_b_a_and_unmerge_restores_w():
    model = apply_lora(tiny_gpt(), r=4, lora_alpha=16)  # scaling 4
    randomize_lora(model)
    x = token_ids()
    with torch.no_grad():
        unmerged_logits = model(x)
        with disable_lora(model):
            base_logits = model(x)
    assert not torch.allclose(unmerged_logits, base_logits, atol=1e-3)  # the adapters matter

    W0 = {n: layer.weight.detach().clone() for n, layer in lora_layers(model)}
    assert len(W0) == len(BLOCK_LINEARS)
    merge_lora(model)
    for n, layer in lora_layers(model):
        assert layer.merged and layer.scaling == 4.0
        expected = W0[n] + 4.0 * (layer.lora_B.weight @ layer.lora_A.weight)  # (out, in)
        torch.testing.assert_close(layer.weight.detach(), expected, rtol=0, atol=1e-6)
    merged_W = {n: layer.weight.detach().clone() for n, layer in lora_layers(model)}

    calls = []
    hooks = [layer.lora_A.register_forward_hook(lambda *a: calls.append(1)) for _, layer in lora_layers(model)]
    with torch.no_grad():
        merged_logits = model(x)
    for h in hooks:
        h.remove()
    assert calls == []  # merged: no extra matmuls, just the base layer's F.linear
    torch.testing.assert_close(merged_logits, unmerged_logits, rtol=0, atol=1e-5)

    merge_lora(model)  # merging twice does nothing
    for n, layer in lora_layers(model):
        assert torch.equal(layer.weight, merged_W[n]), n

    unmerge_lora(model)
    for n, layer in lora_layers(model):
        assert not layer.merged
        torch.testing.assert_close(layer.weight.detach(), W0[n], rtol=0, atol=1e-6)
    unmerge_lora(model)  # and unmerging twice too
    for n, layer in lora_layers(model):
        torch.testing.assert_close(layer.weight.detach(), W0[n], rtol=0, atol=1e-6)


def test_disable_gives_exactly_the_base_model_after_training_then_reenables():
    base = tiny_gpt()
    model = apply_lora(copy.deepcopy(base), r=4, lora_alpha=8)
    assert lora_names(model) == BLOCK_LINEARS
    opt = make_optimizer(model, lr=5e-2, weight_decay=0.0)
    model.train()
    x = token_ids(3, T=13)
    for _ in range(3):
        loss = lm_loss(model, x[:, :-1], x[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        base_logits, lora_logits = base(x), model(x)
        assert not torch.allclose(lora_logits, base_logits, atol=1e-4)
        with disable_lora(model):
            assert all(layer.disabled for _, layer in lora_layers(model))
            assert torch.equal(model(x), base_logits)
        assert not any(layer.disabled for _, layer in lora_layers(model))
        assert torch.equal(model(x), lora_logits)

        merge_lora(model)
        with pytest.raises(RuntimeError, match="unmerge"):
            with disable_lora(model):
                pass


# ---------------------------------------------------------------------------------------------
# Counting and freezing


def test_trainable_count_is_r_times_in_plus_out_per_layer_plus_the_head():
    r = 4
    model = apply_lora(tiny_gpt(head=True), r=r, lora_alpha=8, train_head=True)
    shapes = {"attn.q_proj": (C, C), "attn.k_proj": (C, C), "attn.v_proj": (C, C), "attn.out_proj": (C, C), "mlp.fc": (C, 4 * C), "mlp.proj": (4 * C, C)}
    per_type = {t: N_LAYER * r * (i + o) for t, (i, o) in shapes.items()}
    head = C * 2 + 2
    counts = count_lora_parameters(model)
    assert counts["by_layer_type"] == {**per_type, "head": head}
    assert counts["trainable"] == sum(per_type.values()) + head
    assert counts["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert counts["lora"] == sum(per_type.values())
    assert counts["total"] == count_parameters(tiny_gpt(head=True)) + counts["lora"]  # tied weight counted once
    assert model.head.weight.requires_grad and model.head.bias.requires_grad
    assert model.lora_config.modules_to_save == ["head"]
    frozen_names = [n for n in dict(model.named_parameters()) if n.startswith(("tok_emb", "pos_emb", "ln_f"))]
    assert len(frozen_names) == 4  # tok_emb, pos_emb, ln_f weight + bias (lm_head shares tok_emb's tensor)
    assert not any(dict(model.named_parameters())[n].requires_grad for n in frozen_names)

    frozen_head = apply_lora(tiny_gpt(head=True), r=r, lora_alpha=8)  # no train_head: the head is frozen too
    assert count_lora_parameters(frozen_head)["trainable"] == sum(per_type.values())
    assert "head" not in count_lora_parameters(frozen_head)["by_layer_type"]


def test_modules_to_save_keeps_named_modules_trainable():
    model = apply_lora(tiny_gpt(head=True), r=4, lora_alpha=8, target_modules="q_proj", modules_to_save=["ln_f", "head"])
    assert model.lora_config.modules_to_save == ["ln_f", "head"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == lora_keys(model) | {"ln_f.weight", "ln_f.bias", "head.weight", "head.bias"}


def test_tied_embeddings_stay_tied_and_frozen():
    model = apply_lora(tiny_gpt(), r=4, lora_alpha=8)
    assert model.config.tie_weights
    assert model.lm_head.weight is model.tok_emb.weight
    assert isinstance(model.lm_head, nn.Linear) and not model.lm_head.weight.requires_grad
    emb = model.tok_emb.weight.detach().clone()
    opt = make_optimizer(model, lr=1e-2, weight_decay=0.1)
    x = token_ids(0, T=13)
    lm_loss(model, x[:, :-1], x[:, 1:]).backward()
    opt.step()
    assert torch.equal(model.tok_emb.weight, emb)


# ---------------------------------------------------------------------------------------------
# State dicts


def test_base_state_dict_loads_into_lora_model_with_only_lora_keys_missing():
    base = tiny_gpt(seed=0)
    model = apply_lora(tiny_gpt(seed=1), r=4, lora_alpha=8)  # different weights until loaded
    assert "blocks.0.attn.q_proj.weight" in model.state_dict()
    assert not any(".base." in k for k in model.state_dict())
    result = model.load_state_dict(base.state_dict(), strict=False)
    assert set(result.missing_keys) == lora_keys(model)
    assert len(lora_keys(model)) == 2 * len(BLOCK_LINEARS)
    assert result.unexpected_keys == []
    x = token_ids()
    with torch.no_grad():
        assert torch.equal(model(x), base(x))


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


def edit_config(folder: Path, **changes) -> None:
    """Rewrite the adapter's JSON with keys changed (a value of ``DROP`` deletes the key)."""
    config = json.loads((folder / ADAPTER_CONFIG_NAME).read_text())
    for k, v in changes.items():
        if v is DROP:
            config.pop(k, None)
        else:
            config[k] = v
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
    edit_config(adapter, gpt_config=None, tensors=DROP, lora_dropout=DROP, modules_to_save=DROP)  # an older, sparser file
    target = load_adapter(with_head(load_model(base_checkpoint), seed=3), adapter)
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

    monkeypatch.setattr(gpt.lora, "save_file", crashing_save_file)
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
# Bad arguments: ConfigError (a ValueError), before anything changes


def assert_untouched(model: nn.Module) -> None:
    assert lora_names(model) == [] and all(p.requires_grad for p in model.parameters())
    assert not hasattr(model, "lora_config")


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        (dict(r=0), r"r \(the LoRA rank\) must be a positive integer, got 0"),
        (dict(r=-2), r"r \(the LoRA rank\) must be a positive integer, got -2"),
        (dict(r=2.5), r"r \(the LoRA rank\) must be a positive integer, got 2.5"),
        (dict(r=True), r"r \(the LoRA rank\) must be a positive integer, got True"),
        (dict(r="8"), r"r \(the LoRA rank\) must be a positive integer, got '8'"),
        (dict(lora_alpha=0), r"lora_alpha must be a positive number, got 0"),
        (dict(lora_alpha=-1.0), r"lora_alpha must be a positive number, got -1.0"),
        (dict(lora_alpha=math.inf), r"lora_alpha must be a positive number, got inf"),
        (dict(lora_alpha=math.nan), r"lora_alpha must be a positive number, got nan"),
        (dict(lora_alpha="16"), r"lora_alpha must be a positive number, got '16'"),
        (dict(lora_dropout=1.0), r"lora_dropout must be a number in \[0, 1\), got 1.0"),
        (dict(lora_dropout=-0.1), r"lora_dropout must be a number in \[0, 1\), got -0.1"),
        (dict(lora_dropout="0.1"), r"lora_dropout must be a number in \[0, 1\), got '0.1'"),
    ],
)
def test_bad_r_lora_alpha_or_lora_dropout_is_refused(kwargs, phrase):
    settings = {"r": 4, "lora_alpha": 8, **kwargs}
    model = tiny_gpt()
    with pytest.raises(ConfigError, match=phrase):
        apply_lora(model, **settings)
    assert_untouched(model)
    with pytest.raises(ConfigError, match=phrase):
        LoRALinear(nn.Linear(4, 4), **settings)


def test_empty_target_modules_is_refused_instead_of_freezing_everything():
    model = tiny_gpt()
    with pytest.raises(ConfigError, match=r"target_modules is empty, so LoRA would wrap nothing"):
        apply_lora(model, r=4, lora_alpha=8, target_modules=[])
    assert_untouched(model)


@pytest.mark.parametrize(
    "argument, value",
    [
        ("target_modules", 5),
        ("target_modules", [5]),
        ("target_modules", nn.Linear(4, 4)),  # an instance, not the type
        ("target_modules", [""]),
        ("target_modules", ["q_proj", None]),
        ("modules_to_save", 3.0),
        ("modules_to_save", True),  # train_head=True passed in the wrong place
        ("modules_to_save", [torch.zeros(2)]),
    ],
)
def test_target_modules_and_modules_to_save_of_the_wrong_type_are_refused(argument, value):
    model = tiny_gpt(head=True)
    with pytest.raises(ConfigError, match=rf"{argument} takes module-name patterns \(str\) or nn.Module subclasses"):
        apply_lora(model, r=4, lora_alpha=8, **{argument: value})
    assert_untouched(model)


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        (dict(target_modules=["q_proj", "no_such_layer"]), r"target_modules pattern 'no_such_layer' matches no nn.Linear module"),
        (dict(target_modules="ln_f"), r"target_modules pattern 'ln_f' matches no nn.Linear module"),  # exists, but a LayerNorm
        (dict(modules_to_save=["nope"]), r"modules_to_save pattern 'nope' matches no module"),
        (dict(target_modules="lm_head"), r"lm_head.weight is tied to \['tok_emb.weight'\]"),  # merging would change the embedding
        (dict(train_head=True), r"train_head=True but the model has no module named one of"),
        (dict(train_head="yes"), r"train_head must be True or False, got 'yes'"),
    ],
)
def test_targets_that_cannot_work_are_refused_before_anything_changes(kwargs, phrase):
    model = tiny_gpt()
    with pytest.raises(ConfigError, match=phrase):
        apply_lora(model, r=4, lora_alpha=8, **kwargs)
    assert_untouched(model)


def test_a_module_both_wrapped_and_fully_trainable_is_refused():
    model = tiny_gpt(head=True)
    with pytest.raises(ConfigError, match=r"module 'head' is both LoRA-wrapped and asked to be fully trainable"):
        apply_lora(model, r=4, lora_alpha=8, target_modules="head", train_head=True)
    assert_untouched(model)


def test_applying_twice_is_an_error():
    model = apply_lora(tiny_gpt(), r=4, lora_alpha=8)
    with pytest.raises(ConfigError, match="already has LoRA layers"):
        apply_lora(model, r=4, lora_alpha=8)


def test_errors_are_gpt_errors_and_value_errors():
    assert issubclass(AdapterError, GPTError) and issubclass(AdapterError, ValueError)
    assert issubclass(ConfigError, GPTError) and issubclass(ConfigError, ValueError)
    assert gpt.lora.AdapterError is gpt.errors.AdapterError


# ---------------------------------------------------------------------------------------------
# Choosing layers


def test_targets_by_name_pattern_and_by_type():
    assert lora_names(apply_lora(tiny_gpt(), 4, 8, target_modules="*.attn.q_proj")) == ["blocks.0.attn.q_proj", "blocks.1.attn.q_proj"]
    assert lora_names(apply_lora(tiny_gpt(), 4, 8, target_modules=["q_proj", "v_proj"])) == [
        "blocks.0.attn.q_proj", "blocks.0.attn.v_proj", "blocks.1.attn.q_proj", "blocks.1.attn.v_proj",
    ]  # fmt: skip
    assert lora_names(apply_lora(tiny_gpt(), 4, 8, target_modules="blocks.1.*")) == [n for n in BLOCK_LINEARS if n.startswith("blocks.1.")]
    assert lora_names(apply_lora(tiny_gpt(), 4, 8, target_modules=MLP)) == [n for n in BLOCK_LINEARS if ".mlp." in n]
    untied = tiny_gpt(head=True, tie_weights=False)
    assert lora_names(apply_lora(untied, 4, 8, target_modules=nn.Linear)) == BLOCK_LINEARS + ["lm_head", "head"]


def test_head_excluded_by_default_and_included_when_asked():
    default = apply_lora(tiny_gpt(head=True), r=4, lora_alpha=8)
    assert lora_names(default) == BLOCK_LINEARS
    assert type(default.head) is nn.Linear and type(default.lm_head) is nn.Linear
    assert not default.head.weight.requires_grad

    asked = apply_lora(tiny_gpt(head=True), r=4, lora_alpha=8, target_modules=["*.attn.*", "head"])
    assert isinstance(asked.head, LoRALinear)
    assert lora_names(asked) == [n for n in BLOCK_LINEARS if ".attn." in n] + ["head"]


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
        (dict(r=0), r"adapter_config.json: r \(the LoRA rank\) must be a positive integer, got 0"),
        (dict(r="4"), r"adapter_config.json: r \(the LoRA rank\) must be a positive integer, got '4'"),
        (dict(r=4.0), r"adapter_config.json: r \(the LoRA rank\) must be a positive integer, got 4.0"),
        (dict(lora_alpha=-8), r"adapter_config.json: lora_alpha must be a positive number, got -8"),
        (dict(lora_dropout=1.5), r"adapter_config.json: lora_dropout must be a number in \[0, 1\), got 1.5"),
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


# --- the training path: one matmul forward, low-rank backward --------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_the_fused_training_path_equals_the_definition(bias):
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(12, 20, bias=bias), r=3, lora_alpha=6.0)
    with torch.no_grad():
        layer.lora_B.weight.normal_(std=0.5)  # a non-zero update, as after some training
    x = torch.randn(4, 5, 12, requires_grad=True)
    y = layer(x)
    definition = F.linear(x, layer.weight, layer.bias) + layer.scaling * (x @ layer.lora_A.weight.T) @ layer.lora_B.weight.T
    torch.testing.assert_close(y, definition, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, layer.lora_A.weight, layer.lora_B.weight), g, retain_graph=True)
    expected = torch.autograd.grad(definition, (x, layer.lora_A.weight, layer.lora_B.weight), g)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    y.sum().backward()
    assert layer.weight.grad is None and (not bias or layer.bias.grad is None), "the frozen weights get no gradient"


def test_the_fused_training_path_under_bf16_autocast():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(32, 48), r=4, lora_alpha=8.0)
    with torch.no_grad():
        layer.lora_B.weight.normal_(std=0.5)
    x = torch.randn(8, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
        ref = F.linear(x, layer.weight, layer.bias) + layer.scaling * layer.lora_B(layer.lora_A(x))
    assert y.dtype == torch.bfloat16 and ref.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ref.float(), atol=0.05, rtol=0.02)
    dA, dB = torch.autograd.grad(y.float().sum(), (layer.lora_A.weight, layer.lora_B.weight))
    rA, rB = torch.autograd.grad(ref.float().sum(), (layer.lora_A.weight, layer.lora_B.weight))
    assert dA.dtype == dB.dtype == torch.float32
    torch.testing.assert_close(dA, rA, atol=0.1, rtol=0.05)
    torch.testing.assert_close(dB, rB, atol=0.1, rtol=0.05)
