"""The GPT model: configuration, parameter counts, attention, causality, generation."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from gpt.errors import ConfigError
from gpt.model import (
    GPT,
    PRESETS,
    GPTConfig,
    count_parameters,
    explicit_causal_attention,
    sample_next,
)


def tiny(**overrides) -> GPTConfig:
    return GPTConfig.from_preset("course-tiny", **overrides)


def make(seed=0, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(tiny(**overrides)).eval()


def ids(B=2, T=16, V=4096, seed=1):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# --- configuration ------------------------------------------------------------------------------


def test_config_rejects_indivisible_heads():
    with pytest.raises(ConfigError, match="divisible by n_head"):
        GPTConfig(n_embd=100, n_head=3)


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_config_rejects_bad_context_length(value):
    with pytest.raises(ConfigError, match="context_length must be a whole number >= 1"):
        GPTConfig(context_length=value)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(vocab_size=0), "vocab_size"),
        (dict(n_layer=0), "n_layer"),
        (dict(dropout=1.0), "dropout"),
        (dict(dropout=-0.1), "dropout"),
        (dict(attn_impl="flash"), "attn_impl"),
        (dict(tie_weights="yes"), "tie_weights must be True or False"),
        (dict(dropout="0.1"), r"dropout must be a finite number in \[0, 1\), got '0.1'"),
    ],
)
def test_config_rejects_other_bad_values(overrides, match):
    with pytest.raises(ConfigError, match=match):
        GPTConfig(**overrides)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'gpt5'"):
        GPTConfig.from_preset("gpt5")


def test_preset_overrides_and_dict_round_trip():
    cfg = GPTConfig.from_preset("course", dropout=0.1)
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size, cfg.context_length) == (4, 3, 192, 4096, 256)
    assert cfg.dropout == 0.1
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown GPTConfig fields"):
        GPTConfig.from_dict({**cfg.to_dict(), "n_embed": 3})


# --- parameter counts ---------------------------------------------------------------------------


def test_gpt2_small_parameter_count_on_meta():
    cfg = GPTConfig.from_preset("gpt2-small")
    with torch.device("meta"):
        model = GPT(cfg)
    assert next(model.parameters()).is_meta
    assert count_parameters(model) == 124_439_808  # GPT-2 small, output layer tied to the embedding
    assert count_parameters(model, trainable_only=True) == 124_439_808
    untied = dataclasses.replace(cfg, tie_weights=False)
    with torch.device("meta"):
        assert count_parameters(GPT(untied)) == 124_439_808 + 50257 * 768


@pytest.mark.parametrize(
    "preset, expected",
    [("gpt2-medium", 354_823_168), ("gpt2-large", 774_030_080), ("gpt2-xl", 1_557_611_200)],
)
def test_bigger_gpt2_parameter_counts(preset, expected):
    with torch.device("meta"):
        model = GPT(GPTConfig.from_preset(preset))
    assert count_parameters(model) == expected


def test_count_parameters_course_and_trainable_only():
    model = GPT(GPTConfig.from_preset("course"))
    C, V, T, L = 192, 4096, 256, 4
    per_block = 2 * 2 * C + 3 * C * C + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C)
    assert count_parameters(model) == V * C + T * C + L * per_block + 2 * C
    for p in model.tok_emb.parameters():
        p.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - V * C


def test_tied_weights_are_the_same_tensor():
    model = make()
    assert model.lm_head.weight is model.tok_emb.weight
    assert model.lm_head.weight.data_ptr() == model.tok_emb.weight.data_ptr()
    untied = make(tie_weights=False)
    assert untied.lm_head.weight is not untied.tok_emb.weight


# --- forward pass and attention ------------------------------------------------------------------


def test_logits_shape():
    model = make()
    out = model(ids(B=3, T=10))
    assert out.shape == (3, 10, 4096)
    assert out.dtype == torch.float32
    assert model.hidden_states(ids(B=3, T=10)).shape == (3, 10, 32)


def test_full_context_ok_and_too_long_raises():
    model = make()
    assert model(ids(B=1, T=64)).shape == (1, 64, 4096)
    with pytest.raises(ConfigError, match="longer than the model's context of 64"):
        model(ids(B=1, T=65))
    with pytest.raises(ConfigError, match="shape"):
        model(torch.zeros(8, dtype=torch.long))


def test_explicit_attention_function_equals_sdpa():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 5, generator=g) for _ in range(3))
    mask = torch.triu(torch.ones(7, 7, dtype=torch.bool), diagonal=1)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(explicit_causal_attention(q, k, v, mask), want, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dropout, train_mode", [(0.0, False), (0.0, True), (0.2, False)])
def test_explicit_model_equals_sdpa_model(dropout, train_mode):
    sdpa = make(seed=3, dropout=dropout, attn_impl="sdpa")
    explicit = GPT(tiny(dropout=dropout, attn_impl="explicit"))
    explicit.load_state_dict(sdpa.state_dict())
    sdpa.train(train_mode)
    explicit.train(train_mode)
    x = ids(B=2, T=64)
    a, b = sdpa(x), explicit(x)
    assert (a - b).abs().max() < 1e-5
    # and the gradients agree as well
    target = ids(B=2, T=64, seed=7)
    F.cross_entropy(a.flatten(0, 1), target.flatten()).backward()
    F.cross_entropy(b.flatten(0, 1), target.flatten()).backward()
    for (name, pa), pb in zip(sdpa.named_parameters(), explicit.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-6, rtol=1e-4, msg=name)


def test_dropout_is_active_in_train_mode_only():
    model = make(dropout=0.5)
    x = ids(B=1, T=8)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("attn_impl", ["sdpa", "explicit"])
def test_causality(attn_impl):
    model = make(attn_impl=attn_impl)
    x = ids(B=1, T=20)
    t = 12
    y = x.clone()
    y[0, t] = (x[0, t] + 1) % 4096  # change one token
    a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :t], b[:, :t], atol=1e-6, rtol=0)  # earlier positions do not see it
    assert (a[:, t:] - b[:, t:]).abs().amax(dim=-1).min() > 1e-4  # it and every later position do


def test_same_seed_same_weights():
    a, b, c = make(seed=5), make(seed=5), make(seed=6)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.tok_emb.weight, c.tok_emb.weight)


def test_residual_projection_init_is_scaled():
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("course"))
    std_proj = model.blocks[0].mlp.proj.weight.std().item()
    std_fc = model.blocks[0].mlp.fc.weight.std().item()
    assert std_fc == pytest.approx(0.02, rel=0.05)
    assert std_proj == pytest.approx(0.02 / (2 * 4) ** 0.5, rel=0.05)


# --- generation ---------------------------------------------------------------------------------


def _greedy_by_hand(model, x, n):
    for _ in range(n):
        nxt = model(x[:, -model.config.context_length :])[:, -1].argmax(-1, keepdim=True)
        x = torch.cat([x, nxt], dim=1)
    return x


def test_generate_greedy_is_deterministic_and_argmax():
    model = make()
    x = ids(B=2, T=5)
    a = model.generate(x, 10)
    assert a.shape == (2, 15)
    assert torch.equal(a[:, :5], x)
    assert torch.equal(a, model.generate(x, 10))
    assert torch.equal(a, _greedy_by_hand(model, x, 10))


def test_generate_beyond_context_crops():
    model = make()
    x = ids(B=1, T=60)
    out = model.generate(x, 10)
    assert out.shape == (1, 70)
    assert torch.equal(out, _greedy_by_hand(model, x, 10))


def test_generate_restores_training_mode():
    model = make()
    model.train()
    model.generate(ids(B=1, T=3), 2)
    assert model.training


def test_generate_stops_at_eos():
    model = make()
    x = ids(B=1, T=5)
    first = model.generate(x, 1)[0, -1].item()
    out = model.generate(x, 20, eos_id=first)
    assert out.shape == (1, 6) and out[0, -1].item() == first
    # a batch stops once every row has produced eos; rows that finished keep emitting eos
    x2 = torch.cat([x, ids(B=1, T=5, seed=9)])
    greedy = model.generate(x2, 8)
    eos = greedy[1, 7].item()  # the second row's 3rd new token
    out2 = model.generate(x2, 8, eos_id=eos)
    for r in range(2):
        row, got = greedy[r, 5:].tolist(), out2[r, 5:].tolist()
        k = row.index(eos) if eos in row else len(row)
        assert got[: k + 1] == row[: k + 1][: len(got)]  # the greedy tokens up to the first eos
        assert all(t == eos for t in got[k + 1 :])  # then only eos
    # the batch stops right after the step in which the last row produced eos (else after 8 tokens)
    firsts = [row.index(eos) if eos in row else None for row in greedy[:, 5:].tolist()]
    n_new = 8 if None in firsts else max(firsts) + 1
    assert firsts[1] is not None and out2.shape == (2, 5 + n_new)


def test_top_k_1_equals_greedy():
    model = make()
    x = ids(B=2, T=5)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(model.generate(x, 8, temperature=1.5, top_k=1, generator=g), model.generate(x, 8))


def test_tiny_top_p_equals_greedy():
    model = make()
    x = ids(B=2, T=5)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(model.generate(x, 8, temperature=1.0, top_p=1e-6, generator=g), model.generate(x, 8))


def test_sampling_is_reproducible_with_generator():
    model = make()
    x = ids(B=2, T=5)
    a = model.generate(x, 12, temperature=1.0, generator=torch.Generator().manual_seed(1))
    b = model.generate(x, 12, temperature=1.0, generator=torch.Generator().manual_seed(1))
    c = model.generate(x, 12, temperature=1.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sample_next_filters():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    draws = {sample_next(logits, top_k=2, generator=g).item() for _ in range(200)}
    assert draws == {0, 1}
    draws = {sample_next(logits, top_p=0.7, generator=g).item() for _ in range(200)}
    assert draws == {0, 1}  # 0.5 < 0.7, 0.5 + 0.3 reaches it
    draws = {sample_next(logits, top_p=0.85, generator=g).item() for _ in range(300)}
    assert draws == {0, 1, 2}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(temperature=-0.1), "temperature must be a finite number >= 0"),
        (dict(temperature=float("nan")), "temperature must be a finite number >= 0, got nan"),
        (dict(temperature=float("inf")), "temperature must be a finite number >= 0, got inf"),
        (dict(temperature="hot"), "temperature must be a finite number"),
        (dict(top_k=0), "top_k must be a whole number >= 1"),
        (dict(top_k=1.5), "top_k must be a whole number >= 1"),
        (dict(top_p=0.0), "top_p must be a finite number in"),
        (dict(top_p=1.5), "top_p must be a finite number in"),
        (dict(top_p=float("nan")), "top_p must be a finite number in"),
        (dict(max_new_tokens=-1), "max_new_tokens must be a whole number >= 0, got -1"),
        (dict(max_new_tokens=2.5), "max_new_tokens must be a whole number >= 0, got 2.5"),
        (dict(max_new_tokens=True), "max_new_tokens must be a whole number"),
        (dict(eos_id=4096), r"eos_id \(a token id\) must be a whole number in \[0, 4095\], got 4096"),
        (dict(eos_id=-1), r"eos_id \(a token id\) must be a whole number"),
    ],
)
def test_generate_rejects_bad_arguments(kwargs, match):
    kwargs = {"max_new_tokens": 2, **kwargs}
    with pytest.raises(ConfigError, match=match):
        make().generate(ids(B=1, T=3), **kwargs)


def test_generate_zero_new_tokens_returns_the_prompt():
    x = ids(B=1, T=3)
    assert torch.equal(make().generate(x, 0), x)


@pytest.mark.parametrize(
    "prompt, match",
    [
        (torch.zeros(1, 0, dtype=torch.long), "the prompt is empty"),
        (torch.tensor([[1, 2, 4096]]), "token id 4096 is outside the model's vocabulary \\(ids 0 to 4095\\)"),
        (torch.tensor([[-1, 2]]), "token id -1 is outside the model's vocabulary"),
        (torch.tensor([[1.0, 2.0]]), "must be an integer tensor, got dtype torch.float32"),
        (torch.tensor([1, 2]), "expected token ids of shape \\(batch, time\\), got \\(2,\\)"),
        ([[1, 2]], "must be a torch tensor"),
    ],
)
def test_generate_rejects_bad_prompts(prompt, match):
    with pytest.raises(ConfigError, match=match):
        make().generate(prompt, 3)


def test_forward_and_hidden_states_check_ids():
    model = make()
    with pytest.raises(ConfigError, match="token id 5000 is outside the model's vocabulary"):
        model(torch.tensor([[3, 5000, 7]]))
    with pytest.raises(ConfigError, match="token id -3 is outside"):
        model.hidden_states(torch.tensor([[-3, 1]]))
    with pytest.raises(ConfigError, match="integer tensor"):
        model(torch.tensor([[True, False]]))
    assert model(torch.tensor([[0, 4095]])).shape == (1, 2, 4096)  # both ends of the vocabulary are fine


def test_presets_are_valid():
    for name, fields in PRESETS.items():
        cfg = GPTConfig.from_preset(name)
        assert cfg == GPTConfig(**fields) and cfg.n_embd % cfg.n_head == 0


# --- attn_impl="auto" ----------------------------------------------------------------------------


def test_auto_attention_picks_explicit_for_bf16_on_cpu_and_sdpa_otherwise():
    attn = make(attn_impl="auto").blocks[0].attn
    assert GPTConfig().attn_impl == "auto"
    assert not attn.use_sdpa(torch.zeros(1, dtype=torch.bfloat16)) and not attn.use_sdpa(torch.zeros(1, dtype=torch.float16))
    assert attn.use_sdpa(torch.zeros(1, dtype=torch.float32))
    assert make(attn_impl="sdpa").blocks[0].attn.use_sdpa(torch.zeros(1, dtype=torch.bfloat16))
    assert not make(attn_impl="explicit").blocks[0].attn.use_sdpa(torch.zeros(1, dtype=torch.float32))


@pytest.mark.parametrize("impl", ["sdpa", "explicit"])
def test_auto_model_computes_what_the_implementation_it_picks_computes(impl):
    """Under bf16 autocast "auto" runs the explicit softmax, in fp32 the fused kernel: same numbers, bit for bit."""
    auto = make(seed=3, attn_impl="auto")
    fixed = GPT(tiny(attn_impl=impl)).eval()
    fixed.load_state_dict(auto.state_dict())
    x = ids(B=2, T=64)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=impl == "explicit"):
        assert torch.equal(auto(x), fixed(x))


def test_bf16_explicit_attention_is_close_to_bf16_sdpa():
    sdpa, explicit = make(seed=3, attn_impl="sdpa"), GPT(tiny(attn_impl="explicit")).eval()
    explicit.load_state_dict(sdpa.state_dict())
    x = ids(B=2, T=64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = sdpa(x).float(), explicit(x).float()
    assert (a - b).abs().max() < 0.05 * a.abs().max()  # bf16 rounding, not a different function
