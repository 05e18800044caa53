"""LoRA: frozen base, exact start, merge/unmerge, disable, counting, state-dict and adapter round trips."""

import copy
import hashlib
import json

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

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


def token_ids(seed: int = 0, batch: int = 2, T: int = 12) -> torch.Tensor:
    return torch.randint(0, 4096, (batch, T), generator=torch.Generator().manual_seed(seed))


def randomize_lora(model, seed: int = 1, std: float = 0.1) -> None:
    """Stand-in for training: give every adapter a non-zero B (and a new A), so ΔW != 0."""
    g = torch.Generator().manual_seed(seed)
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
    model = apply_lora(copy.deepcopy(base), rank=4, alpha=8)
    x = token_ids()
    assert all(torch.count_nonzero(layer.lora_A.weight) > 0 for _, layer in lora_layers(model))  # A random, B zero
    assert all(torch.count_nonzero(layer.lora_B.weight) == 0 for _, layer in lora_layers(model))
    with torch.no_grad():
        assert torch.equal(model(x), base(x))


def test_optimizer_step_changes_only_the_lora_factors():
    model = apply_lora(tiny_gpt(), rank=4, alpha=8)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert set(lora) == lora_keys(model)
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
    layer = LoRALinear(base, rank=2, alpha=3.0)
    nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(4, 6)
    A, B = layer.lora_A.weight, layer.lora_B.weight  # (r, in), (out, r)
    assert A.shape == (2, 6) and B.shape == (5, 2) and layer.scale == 1.5
    expected = x @ base.weight.T + base.bias + 1.5 * (x @ A.T @ B.T)
    torch.testing.assert_close(layer(x), expected)
    assert layer.weight is base.weight and not layer.weight.requires_grad
    assert set(layer.state_dict()) == {"weight", "bias", "lora_A.weight", "lora_B.weight"}


def test_lora_dropout_only_while_training():
    model = apply_lora(tiny_gpt(), rank=4, alpha=8, dropout=0.5)
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
    model = apply_lora(tiny_gpt(), rank=4, alpha=16)  # scale 4
    randomize_lora(model)
    x = token_ids()
    with torch.no_grad():
        unmerged_logits = model(x)
        with disable_lora(model):
            base_logits = model(x)
    assert not torch.allclose(unmerged_logits, base_logits, atol=1e-3)  # the adapters matter

    W0 = {n: layer.weight.detach().clone() for n, layer in lora_layers(model)}
    merge_lora(model)
    for n, layer in lora_layers(model):
        assert layer.merged
        expected = W0[n] + layer.scale * (layer.lora_B.weight @ layer.lora_A.weight)  # (out, in)
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
    model = apply_lora(copy.deepcopy(base), rank=4, alpha=8)
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
    model = apply_lora(tiny_gpt(head=True), rank=r, alpha=8, train_head=True)
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
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith(("tok_emb", "pos_emb", "ln_f", "lm_head")))

    frozen_head = apply_lora(tiny_gpt(head=True), rank=r, alpha=8)  # no train_head: the head is frozen too
    assert count_lora_parameters(frozen_head)["trainable"] == sum(per_type.values())
    assert "head" not in count_lora_parameters(frozen_head)["by_layer_type"]


def test_train_head_without_a_head_is_an_error():
    with pytest.raises(ValueError, match="head"):
        apply_lora(tiny_gpt(), rank=4, alpha=8, train_head=True)


def test_tied_embeddings_stay_tied_and_frozen():
    model = apply_lora(tiny_gpt(), rank=4, alpha=8)
    assert model.config.tie_weights
    assert model.lm_head.weight is model.tok_emb.weight
    assert isinstance(model.lm_head, nn.Linear) and not model.lm_head.weight.requires_grad
    emb = model.tok_emb.weight.detach().clone()
    opt = make_optimizer(model, lr=1e-2, weight_decay=0.1)
    x = token_ids(0, T=13)
    lm_loss(model, x[:, :-1], x[:, 1:]).backward()
    opt.step()
    assert torch.equal(model.tok_emb.weight, emb)
    with pytest.raises(ValueError, match="tied"):  # LoRA on a tied lm_head would change the embedding too
        apply_lora(tiny_gpt(), rank=4, alpha=8, targets="lm_head")


# ---------------------------------------------------------------------------------------------
# State dicts


def test_base_state_dict_loads_into_lora_model_with_only_lora_keys_missing():
    base = tiny_gpt(seed=0)
    model = apply_lora(tiny_gpt(seed=1), rank=4, alpha=8)  # different weights until loaded
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
# Adapter files


@pytest.fixture
def base_checkpoint(tmp_path):
    path = tmp_path / "base.safetensors"
    save_model(tiny_gpt(seed=0), path)
    return path


def with_head(model: GPT, seed: int) -> GPT:
    torch.manual_seed(seed)
    model.head = nn.Linear(C, 2)
    return model.eval()


def test_adapter_round_trip_into_a_fresh_base_gives_identical_outputs(tmp_path, base_checkpoint):
    model = apply_lora(with_head(load_model(base_checkpoint), seed=1), rank=4, alpha=8, dropout=0.1, train_head=True)
    randomize_lora(model)
    folder = save_adapter(model, tmp_path / "adapter", base_checkpoint=base_checkpoint, extra={"labels": ["ham", "spam"]})

    config = json.loads((folder / ADAPTER_CONFIG_NAME).read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8 and config["lora_dropout"] == 0.1
    assert config["target_modules"] == BLOCK_LINEARS
    assert config["modules_to_save"] == ["head"]
    assert config["base_model_sha256"] == hashlib.sha256(base_checkpoint.read_bytes()).hexdigest()
    assert config["extra"] == {"labels": ["ham", "spam"]}
    stored = load_file(str(folder / ADAPTER_WEIGHTS_NAME))
    assert set(stored) == lora_keys(model) | {"head.weight", "head.bias"} == set(config["tensors"])

    fresh = with_head(load_model(base_checkpoint), seed=2)  # a different, untrained head
    load_adapter(fresh, folder, base_checkpoint=base_checkpoint)
    assert lora_names(fresh) == BLOCK_LINEARS
    x = token_ids()
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
        assert torch.equal(fresh.head(fresh.hidden_states(x)), model.head(model.hidden_states(x)))
    assert count_lora_parameters(fresh) == count_lora_parameters(model)  # same parts trainable


def test_adapter_on_a_different_base_is_refused(tmp_path, base_checkpoint):
    model = apply_lora(load_model(base_checkpoint), rank=4, alpha=8)
    randomize_lora(model)
    folder = save_adapter(model, tmp_path / "adapter", base_checkpoint=base_checkpoint)
    other = tmp_path / "other.safetensors"
    save_model(tiny_gpt(seed=5), other)
    target = load_model(other)
    with pytest.raises(AdapterError, match="sha256"):
        load_adapter(target, folder, base_checkpoint=other)
    assert lora_names(target) == []  # nothing was changed


def test_mis_shaped_adapter_tensor_is_an_error_naming_the_key(tmp_path, base_checkpoint):
    model = apply_lora(load_model(base_checkpoint), rank=4, alpha=8)
    folder = save_adapter(model, tmp_path / "adapter")
    tensors = load_file(str(folder / ADAPTER_WEIGHTS_NAME))
    tensors["blocks.1.mlp.fc.lora_B.weight"] = torch.zeros(5, 4)  # should be (4C, r) = (128, 4)
    save_file(tensors, str(folder / ADAPTER_WEIGHTS_NAME), metadata={"format": "gpt-course-lora"})
    target = load_model(base_checkpoint)
    with pytest.raises(AdapterError, match=r"'blocks\.1\.mlp\.fc\.lora_B\.weight' has shape \(5, 4\)"):
        load_adapter(target, folder)
    assert lora_names(target) == []

    wider = tiny_gpt(n_embd=48)  # another architecture: the first LoRA factor already disagrees
    with pytest.raises(AdapterError, match=r"lora_[AB]\.weight' has shape"):
        load_adapter(wider, save_adapter(model, tmp_path / "adapter2"))


# ---------------------------------------------------------------------------------------------
# Arguments and choosing layers


@pytest.mark.parametrize("rank, alpha", [(0, 8), (-2, 8), (4, 0), (4, -1.0), (2.5, 8)])
def test_bad_rank_or_alpha_is_refused(rank, alpha):
    model = tiny_gpt()
    with pytest.raises(ValueError, match="rank|alpha"):
        apply_lora(model, rank=rank, alpha=alpha)
    assert lora_names(model) == []
    with pytest.raises(ValueError):
        LoRALinear(nn.Linear(4, 4), rank=rank, alpha=alpha)


def test_bad_dropout_is_refused_before_anything_changes():
    model = tiny_gpt()
    with pytest.raises(ValueError, match="dropout"):
        apply_lora(model, rank=4, alpha=8, dropout=1.0)
    assert lora_names(model) == [] and all(p.requires_grad for p in model.parameters())


def test_applying_twice_is_an_error():
    model = apply_lora(tiny_gpt(), rank=4, alpha=8)
    with pytest.raises(ValueError, match="already"):
        apply_lora(model, rank=4, alpha=8)


def test_targets_by_name_pattern_and_by_type():
    assert lora_names(apply_lora(tiny_gpt(), 4, 8, targets="*.attn.q_proj")) == ["blocks.0.attn.q_proj", "blocks.1.attn.q_proj"]
    assert lora_names(apply_lora(tiny_gpt(), 4, 8, targets=["q_proj", "v_proj"])) == [
        "blocks.0.attn.q_proj", "blocks.0.attn.v_proj", "blocks.1.attn.q_proj", "blocks.1.attn.v_proj",
    ]  # fmt: skip
    assert lora_names(apply_lora(tiny_gpt(), 4, 8, targets="blocks.1.*")) == [n for n in BLOCK_LINEARS if n.startswith("blocks.1.")]
    assert lora_names(apply_lora(tiny_gpt(), 4, 8, targets=MLP)) == [n for n in BLOCK_LINEARS if ".mlp." in n]
    untied = tiny_gpt(head=True, tie_weights=False)
    assert lora_names(apply_lora(untied, 4, 8, targets=nn.Linear)) == BLOCK_LINEARS + ["lm_head", "head"]
    with pytest.raises(ValueError, match="matches no module"):
        apply_lora(tiny_gpt(), 4, 8, targets=["q_proj", "no_such_layer"])


def test_head_excluded_by_default_and_included_when_asked():
    default = apply_lora(tiny_gpt(head=True), rank=4, alpha=8)
    assert lora_names(default) == BLOCK_LINEARS
    assert type(default.head) is nn.Linear and type(default.lm_head) is nn.Linear
    assert not default.head.weight.requires_grad

    asked = apply_lora(tiny_gpt(head=True), rank=4, alpha=8, targets=["*.attn.*", "head"])
    assert isinstance(asked.head, LoRALinear)
    assert lora_names(asked) == [n for n in BLOCK_LINEARS if ".attn." in n] + ["head"]
    with pytest.raises(ValueError, match="both"):
        apply_lora(tiny_gpt(head=True), rank=4, alpha=8, targets="head", train_head=True)
