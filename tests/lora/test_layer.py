"""LoRA layers: frozen base, exact start, merge/unmerge, disable, counting, the state-dict layout, the
fused training path, and a clear error (type + message) for every bad argument."""

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import gpt.errors
import gpt.io.adapters
import gpt.lora
from gpt.errors import AdapterError, ConfigError, GPTError
from gpt.lora import LoRALinear, apply_lora, count_lora_parameters, disable_lora, lora_layers, merge_lora, unmerge_lora
from gpt.model import MLP, count_parameters
from gpt.train import lm_loss, make_optimizer
from helpers_lora import BLOCK_LINEARS, C, N_LAYER, lora_keys, lora_names, randomize_lora, tiny_gpt, token_ids

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
# Bad arguments: ConfigError (a ValueError), before anything changes


def assert_untouched(model: nn.Module) -> None:
    assert lora_names(model) == [] and all(p.requires_grad for p in model.parameters())
    assert not hasattr(model, "lora_config")


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        (dict(r=0), r"r \(the LoRA rank\) must be a whole number >= 1, got 0"),
        (dict(r=-2), r"r \(the LoRA rank\) must be a whole number >= 1, got -2"),
        (dict(r=2.5), r"r \(the LoRA rank\) must be a whole number >= 1, got 2.5"),
        (dict(r=True), r"r \(the LoRA rank\) must be a whole number >= 1, got True"),
        (dict(r="8"), r"r \(the LoRA rank\) must be a whole number >= 1, got '8'"),
        (dict(lora_alpha=0), r"lora_alpha must be a finite number > 0, got 0"),
        (dict(lora_alpha=-1.0), r"lora_alpha must be a finite number > 0, got -1.0"),
        (dict(lora_alpha=math.inf), r"lora_alpha must be a finite number > 0, got inf"),
        (dict(lora_alpha=math.nan), r"lora_alpha must be a finite number > 0, got nan"),
        (dict(lora_alpha="16"), r"lora_alpha must be a finite number > 0, got '16'"),
        (dict(lora_dropout=1.0), r"lora_dropout must be a finite number in \[0, 1\), got 1.0"),
        (dict(lora_dropout=-0.1), r"lora_dropout must be a finite number in \[0, 1\), got -0.1"),
        (dict(lora_dropout="0.1"), r"lora_dropout must be a finite number in \[0, 1\), got '0.1'"),
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


@pytest.mark.parametrize("r, targets, phrase", [
    (100_000, None, r"r \(the LoRA rank, --rank\) 100000 is larger than the layer blocks.0.attn.q_proj \(32 x 32\) of the model allows: "
                    r"its min\(in, out\) is 32, .*Choose r <= 32"),
    (33, None, r"layer blocks.0.attn.q_proj \(32 x 32\) .*Choose r <= 32"),
    (3, "head", r"layer head \(2 x 32\) of the model allows: its min\(in, out\) is 2, .*Choose r <= 2"),
    (20, "pissa", r"layer blocks.0.attn.q_proj \(32 x 32\).*Choose r <= 32"),
])
def test_a_rank_above_a_layers_size_is_refused_naming_the_layer_and_the_bound(r, targets, phrase):
    model = tiny_gpt(head=True)
    kwargs = dict(init_lora_weights="pissa") if targets == "pissa" else dict(target_modules=targets)
    with pytest.raises(GPTError, match=phrase):
        apply_lora(model, r=r if targets != "pissa" else 33, lora_alpha=8, **kwargs)
    assert_untouched(model)
    apply_lora(tiny_gpt(head=True), r=2 if targets == "head" else 32, lora_alpha=8, target_modules=targets if targets != "pissa" else None)


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
    assert gpt.io.adapters.AdapterError is gpt.errors.AdapterError


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
    assert lora_names(apply_lora(untied, 2, 8, target_modules=nn.Linear)) == BLOCK_LINEARS + ["lm_head", "head"]  # r <= 2: the head is 2 x 32


def test_head_excluded_by_default_and_included_when_asked():
    default = apply_lora(tiny_gpt(head=True), r=4, lora_alpha=8)
    assert lora_names(default) == BLOCK_LINEARS
    assert type(default.head) is nn.Linear and type(default.lm_head) is nn.Linear
    assert not default.head.weight.requires_grad

    asked = apply_lora(tiny_gpt(head=True), r=2, lora_alpha=8, target_modules=["*.attn.*", "head"])  # r <= 2: the head is 2 x 32
    assert isinstance(asked.head, LoRALinear)
    assert lora_names(asked) == [n for n in BLOCK_LINEARS if ".attn." in n] + ["head"]


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


def test_a_small_update_is_not_lost_to_bf16_rounding_of_the_weight():
    """Under bf16 autocast, rounding W + s·B·A to bf16 as a whole drops an update smaller than half of
    W's rounding step when W lies on bf16's grid (weights stored in bf16, as many checkpoints are), and
    blurs it with noise as large as itself otherwise. Here every output misses it, in the same direction.
    The package keeps the low-rank term apart, so its outputs scatter around the exact ones."""
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(1024, 64, bias=False), r=4, lora_alpha=4.0)  # scaling 1
    with torch.no_grad():
        sign = torch.randint(0, 2, layer.weight.shape) * 2 - 1
        layer.weight.copy_((sign * torch.empty(layer.weight.shape).uniform_(0.5, 1)).bfloat16())  # bf16 step 2^-8 ≈ 0.004
        layer.lora_A.weight.fill_(1.0)
        layer.lora_B.weight.fill_(2.5e-4)  # ΔW = 4 · 2.5e-4 = 1e-3 everywhere: below half a step of W
    x = torch.rand(128, 1024)  # positive inputs: the missing update adds up (about 0.5 per output)
    exact = x.double() @ (layer.weight.double() + layer.delta_weight().double()).T
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = layer(x).double()
        rounded_as_a_whole = F.linear(x, layer.weight + layer.delta_weight()).double()
    assert (rounded_as_a_whole - exact).mean().abs() > 0.2, "the test's update must be lost when W + ΔW is rounded"
    assert (got - exact).mean().abs() < 0.02, "the update must survive: errors are rounding, not a missing term"


def test_the_training_path_keeps_no_weight_sized_copy_for_backward():
    """Autocast keeps a bf16 copy of a plain layer's weight for the backward pass; LoRA's path makes it
    again there instead (frozen weights), so what it saves is x, the (N, r) bottleneck and the Parameters."""
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(64, 96), r=4, lora_alpha=8.0)
    x = torch.randn(3, 10, 64, requires_grad=True)
    for precision in ("fp32", "bf16"):
        saved = []

        def pack(t):
            saved.append(t)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            layer(x).float().sum().backward()
        parameters = {p.data_ptr() for p in layer.parameters()}
        copies = [tuple(t.shape) for t in saved if t.data_ptr() not in parameters and t.numel() >= 64 * 96]
        assert copies == [], f"{precision}: weight-sized tensors saved for backward: {copies}"
