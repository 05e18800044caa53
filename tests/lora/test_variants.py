"""The LoRA variants (rsLoRA, DoRA, gaussian / PiSSA starts, LoRA+) without PEFT: exact starts, frozen
weights, merge = unmerged, unmerge restores W, disable = the untouched base, counting, adapters that
round-trip (PiSSA's onto the untouched base), LoRA+'s groups, and the fine-tuning config's fields."""

import copy
import json
import math

import pytest
import torch

from gpt import finetune as FT
from gpt.errors import ConfigError
from gpt.io.adapters import load_adapter, read_adapter, save_adapter
from gpt.lora import LoRALinear, apply_lora, count_lora_parameters, disable_lora, lora_layers, merge_lora, unmerge_lora
from gpt.lora.variants import dora_weight_norm, lora_plus_param_groups, lora_scaling, pissa_factors, pissa_to_lora
from gpt.train import lm_loss
from helpers_classify import tiny_classifier, toy_splits
from helpers_lora import BLOCK_LINEARS, C, randomize_lora, tiny_gpt, token_ids

VARIANTS = {
    "rslora": {"use_rslora": True},
    "dora": {"use_dora": True},
    "gaussian": {"init_lora_weights": "gaussian"},
    "pissa": {"init_lora_weights": "pissa"},
    "dora+pissa": {"use_dora": True, "init_lora_weights": "pissa"},
}
TOL = dict(atol=1e-5, rtol=0)


def _trained(variant, seed=3):
    base = tiny_gpt(head=True)
    model = apply_lora(copy.deepcopy(base), r=4, lora_alpha=8, modules_to_save=["head"], **variant)
    randomize_lora(model, seed=seed)  # (PiSSA: A and B move away from their start, as training would)
    if variant.get("use_dora"):
        with torch.no_grad():
            for _, layer in lora_layers(model):
                layer.lora_magnitude_vector.mul_(1.2)
    return base, model


def test_the_formulas():
    assert lora_scaling(16, 8) == 2.0 and lora_scaling(16, 4, use_rslora=True) == 8.0
    W = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    A, B, res = pissa_factors(W, r=2, scaling=0.5)
    torch.testing.assert_close(res + 0.5 * B @ A, W, atol=1e-6, rtol=0)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    torch.testing.assert_close(0.5 * B @ A, U[:, :2] @ torch.diag(S[:2]) @ Vh[:2], atol=1e-6, rtol=0)  # the best rank-2 part
    A0, B0 = A + 0.1, B - 0.1
    A2, B2, r2, alpha2 = pissa_to_lora(A, B, A0, B0, r=2, lora_alpha=1.0)
    assert (A2.shape, B2.shape, r2, alpha2) == ((4, 5), (6, 4), 4, 2.0)
    torch.testing.assert_close(lora_scaling(alpha2, r2) * B2 @ A2, 0.5 * (B @ A - B0 @ A0))
    assert pissa_to_lora(A, B, A0, B0, r=2, lora_alpha=1.0, use_rslora=True)[3] == pytest.approx(math.sqrt(2))
    torch.testing.assert_close(dora_weight_norm(W, 0 * W), W.norm(dim=1))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_fresh_variant_computes_the_base_model(name):
    base = tiny_gpt()
    model = apply_lora(copy.deepcopy(base), r=4, lora_alpha=8, **VARIANTS[name])
    x = token_ids()
    with torch.no_grad():
        torch.testing.assert_close(model(x), base(x), **TOL)


def test_variant_attributes_and_starts():
    lin = torch.nn.Linear(C, 3 * C)
    assert LoRALinear(copy.deepcopy(lin), r=4, lora_alpha=8, use_rslora=True).scaling == 4.0
    g = LoRALinear(copy.deepcopy(lin), r=64, lora_alpha=8, init_lora_weights="gaussian")
    assert abs(g.lora_A.weight.std().item() - 1 / 64) < 0.1 / 64 and torch.count_nonzero(g.lora_B.weight) == 0
    d = LoRALinear(copy.deepcopy(lin), r=4, lora_alpha=8, use_dora=True)
    torch.testing.assert_close(d.lora_magnitude_vector, lin.weight.norm(dim=1))
    assert set(d.state_dict()) == {"weight", "bias", "lora_A.weight", "lora_B.weight", "lora_magnitude_vector"}
    p = LoRALinear(copy.deepcopy(lin), r=4, lora_alpha=8, init_lora_weights="pissa")
    assert set(p.state_dict()) == {"weight", "bias", "lora_A.weight", "lora_B.weight"}  # the start factors are not saved
    assert "use_dora=True" in repr(d) and "init_lora_weights='pissa'" in repr(p)
    with pytest.raises(ConfigError, match="cannot be reset"):
        p.reset_lora_parameters()
    assert LoRALinear(copy.deepcopy(lin), r=4, lora_alpha=8, init_lora_weights=True).init_lora_weights == "kaiming"  # PEFT's True


@pytest.mark.parametrize("kwargs, phrase", [
    (dict(use_dora=1), "use_dora must be True or False"),
    (dict(use_rslora="yes"), "use_rslora must be True or False"),
    (dict(init_lora_weights="olora"), "init_lora_weights must be one of"),
    (dict(init_lora_weights=False), "init_lora_weights must be one of"),
])  # fmt: skip
def test_bad_variant_arguments_are_refused_before_anything_changes(kwargs, phrase):
    model = tiny_gpt()
    with pytest.raises(ConfigError, match=phrase):
        apply_lora(model, r=4, lora_alpha=8, **kwargs)
    assert not list(lora_layers(model))


def test_pissa_rank_above_the_layer_size_is_refused():
    with pytest.raises(ConfigError, match=r"layer blocks.0.attn.q_proj \(32 x 32\) .*Choose r <= 32"):
        apply_lora(tiny_gpt(), r=C + 1, lora_alpha=8, init_lora_weights="pissa")


@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_step_moves_only_the_adapter_and_merge_disable_work(name):
    base, model = _trained(VARIANTS[name])
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    x = token_ids(0, T=13)
    model.train()
    lm_loss(model, x[:, :-1], x[:, 1:]).backward()
    opt.step()
    model.eval()
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"frozen {n} changed"
    if VARIANTS[name].get("use_dora"):
        assert all(layer.lora_magnitude_vector.grad is not None for _, layer in lora_layers(model))
    with torch.no_grad():
        y = model(x)
        with disable_lora(model):
            torch.testing.assert_close(model(x), base(x), **TOL)  # the untouched base (PiSSA: W_res + s·B0·A0)
        weights = {n: layer.weight.clone() for n, layer in lora_layers(model)}
        merge_lora(model)
        torch.testing.assert_close(model(x), y, **TOL)
        unmerge_lora(model)
        for n, layer in lora_layers(model):
            torch.testing.assert_close(layer.weight, weights[n], atol=1e-6, rtol=0)
        torch.testing.assert_close(model(x), y, **TOL)


def test_dora_counts_its_magnitude_vectors():
    model = apply_lora(tiny_gpt(), r=4, lora_alpha=8, use_dora=True)
    plain = apply_lora(tiny_gpt(), r=4, lora_alpha=8)
    outs = sum(layer.out_features for _, layer in lora_layers(model))
    assert count_lora_parameters(model)["trainable"] == count_lora_parameters(plain)["trainable"] + outs
    assert count_lora_parameters(model)["by_layer_type"]["attn.q_proj"] == 2 * (4 * (C + C) + C)


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("fmt", ["course", "peft"])
def test_adapters_round_trip_onto_the_untouched_base(name, fmt, tmp_path):
    base, model = _trained(VARIANTS[name])
    save_adapter(model, tmp_path / "a", format=fmt)
    loaded = load_adapter(copy.deepcopy(base), tmp_path / "a")
    x = token_ids()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), **TOL)
    config, _ = read_adapter(tmp_path / "a")
    if "pissa" in name:  # stored as plain LoRA of rank 2r for the base file's W
        assert (config["r"], config["lora_alpha"], config["init_lora_weights"], config["converted_from"]) == (8, 16.0, "kaiming", "pissa")
        assert all(layer.init_lora_weights == "kaiming" and layer.r == 8 for _, layer in lora_layers(loaded))
    else:
        assert (config["r"], config["use_dora"], config["use_rslora"]) == (4, name == "dora", name == "rslora")


def test_peft_format_files(tmp_path):
    _, model = _trained(VARIANTS["dora"])
    save_adapter(model, tmp_path / "a", format="peft", extra={"task": "spam"})
    peft_cfg = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert peft_cfg["peft_type"] == "LORA" and peft_cfg["use_dora"] and peft_cfg["target_modules"] == BLOCK_LINEARS
    assert peft_cfg["modules_to_save"] == ["head"] and peft_cfg["init_lora_weights"] is True
    from safetensors.torch import load_file

    keys = set(load_file(str(tmp_path / "a" / "adapter_model.safetensors")))
    assert "base_model.model.blocks.0.attn.q_proj.lora_magnitude_vector" in keys and "base_model.model.head.weight" in keys
    assert "base_model.model.lm_head.weight" in keys  # PEFT's suffix match of "head" wraps lm_head too and wants its tensor
    assert read_adapter(tmp_path / "a")[0]["extra"] == {"task": "spam"}
    with pytest.raises(ConfigError, match="format must be one of"):
        save_adapter(model, tmp_path / "b", format="hf")


def test_lora_plus_groups():
    model = apply_lora(tiny_gpt(head=True), r=4, lora_alpha=8, modules_to_save=["head"], use_dora=True)
    groups = lora_plus_param_groups(model, lr=1e-3, ratio=16, weight_decay=0.1)
    lr_of = {id(p): (g["lr"], g["lr_scale"], g["weight_decay"]) for g in groups for p in g["params"]}
    for _, layer in lora_layers(model):
        assert lr_of[id(layer.lora_A.weight)] == (1e-3, 1.0, 0.1)
        assert lr_of[id(layer.lora_B.weight)] == (1.6e-2, 16.0, 0.1)
        assert lr_of[id(layer.lora_magnitude_vector)] == (1.6e-2, 16.0, 0.0)  # 1-D: fast, no decay (as PEFT's groups)
    assert lr_of[id(model.head.weight)][0] == 1e-3 and lr_of[id(model.head.bias)][0] == 1.6e-2
    assert len(lr_of) == sum(1 for p in model.parameters() if p.requires_grad)
    with pytest.raises(ConfigError, match="ratio must be"):
        lora_plus_param_groups(model, lr=1e-3, ratio=0)
    with pytest.raises(ConfigError, match="needs a model with LoRA layers"):
        lora_plus_param_groups(tiny_gpt(), lr=1e-3)


# --- the fine-tuning config -------------------------------------------------------------------


def test_config_fields_labels_and_round_trip():
    d = FT.default_config
    assert d("lora").label == "lora-r8" and d("lora", r=32, lora_alpha=16).label == "lora-r32"  # plain labels unchanged
    assert d("lora", use_dora=True).label == "lora-r8-dora" and d("lora", use_rslora=True).label == "lora-r8-rslora"
    assert d("lora", init_lora_weights="pissa").label == "lora-r8-pissa"
    assert d("lora", loraplus_lr_ratio=16.0).label == "lora-r8-loraplus16"
    assert d("lora", target_modules=["q_proj", "v_proj"]).label == "lora-r8-qv"
    assert d("lora", target_modules=("fc",)).label == "lora-r8-fc"
    c = d("lora", use_dora=True, target_modules=["attn"], loraplus_lr_ratio=4.0)
    assert c.target_modules == ("attn",) and FT.FinetuneConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


@pytest.mark.parametrize("kwargs, phrase", [
    (dict(use_dora="yes"), "use_dora must be True or False"),
    (dict(init_lora_weights="olora"), "init_lora_weights must be one of"),
    (dict(loraplus_lr_ratio=0.0), "loraplus_lr_ratio must be a finite number"),
    (dict(target_modules=()), "target_modules must be a non-empty list"),
    (dict(target_modules=("*.q_proj",)), "no patterns"),
])  # fmt: skip
def test_bad_variant_config_fields(kwargs, phrase):
    with pytest.raises(ConfigError, match=phrase):
        FT.default_config("lora", **kwargs)


@pytest.mark.parametrize("field, value", [("use_dora", True), ("loraplus_lr_ratio", 16.0), ("target_modules", ("q_proj",))])
def test_variant_fields_apply_to_lora_only(field, value):
    with pytest.raises(ConfigError, match="only to lora"):
        FT.default_config("full", **{field: value})
    with pytest.raises(ConfigError, match="apply to strategy 'lora' only"):
        FT.FinetuneConfig("head", **{field: value})


def test_finetune_with_dora_pissa_and_lora_plus_trains_only_the_adapter():
    QUICK = dict(epochs=1, lr=1e-2, batch_size=4, eval_splits=("test",))
    config = FT.default_config("lora", r=2, lora_alpha=4, use_dora=True, init_lora_weights="pissa", loraplus_lr_ratio=16.0,
                               target_modules=["q_proj", "v_proj"], **QUICK)  # fmt: skip
    model = tiny_classifier()
    with torch.random.fork_rng(devices=[]):
        apply_lora(model, r=2, lora_alpha=4, train_head=True, target_modules=["q_proj", "v_proj"], use_dora=True, init_lora_weights="pissa")
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    run = FT.setup(model, toy_splits(), config)
    assert sorted({g["lr_scale"] for g in run.optimizer.param_groups}) == [1.0, 16.0]
    FT.finetune_step(run, [0, 1, 2, 3])
    assert {g["lr"] / g["lr_scale"] for g in run.optimizer.param_groups} == {FT.finetune_lr(run, 0)}
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
