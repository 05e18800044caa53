"""gpt.runtime.fused_loss.cross_entropy: the same loss and gradient as F.cross_entropy, in one pass over the logits."""

import pytest
import torch
import torch.nn.functional as F

from gpt.runtime.fused_loss import cross_entropy, linear_cross_entropy


def _logits(n=37, v=50, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, v, generator=g) * 4).to(dtype), torch.randint(0, v, (n,), generator=g)


@pytest.mark.parametrize("rows", [1, 8, 16, 37, 64])
def test_equals_textbook_loss_and_gradient_fp32(rows):
    z, t = _logits()
    a = z.clone().requires_grad_()
    want = F.cross_entropy(a, t)
    want.backward()
    b = z.clone().requires_grad_()
    got = cross_entropy(b, t, rows_per_chunk=rows)
    (got * 3.0).backward()  # a non-unit upstream gradient is scaled through
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(b.grad, 3.0 * a.grad, atol=1e-7, rtol=1e-5)


def test_bf16_logits_accumulate_in_fp32_and_return_a_bf16_gradient():
    z, t = _logits(n=64, v=4096, dtype=torch.bfloat16)
    a = z.clone().requires_grad_()
    want = F.cross_entropy(a.float(), t)  # the textbook way: one fp32 copy of all the logits
    want.backward()
    b = z.clone().requires_grad_()
    got = cross_entropy(b, t, rows_per_chunk=16)
    got.backward()
    assert got.dtype == torch.float32 and b.grad.dtype == torch.bfloat16
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.grad, a.grad, atol=2e-6, rtol=1e-2)  # both round the same fp32 gradient to bf16


def test_leaves_the_logits_untouched_and_keeps_no_gradient_without_grad():
    z, t = _logits()
    before = z.clone()
    with torch.no_grad():
        loss = cross_entropy(z, t)
    assert torch.equal(z, before) and not loss.requires_grad
    torch.testing.assert_close(loss, F.cross_entropy(z, t))


def test_gradient_of_each_row_sums_to_zero_and_is_negative_only_at_the_target():
    z, t = _logits(n=5, v=7)
    z.requires_grad_()
    cross_entropy(z, t).backward()
    torch.testing.assert_close(z.grad.sum(dim=1), torch.zeros(5), atol=1e-7, rtol=0)
    assert torch.equal(z.grad.argmin(dim=1), t) and (z.grad[torch.arange(5), t] < 0).all()


def test_bad_shapes_are_refused():
    z, t = _logits()
    with pytest.raises(ValueError, match="expected logits"):
        cross_entropy(z[None], t)
    with pytest.raises(ValueError, match="expected logits"):
        cross_entropy(z, t[:-1])


# --- linear_cross_entropy: the output layer folded in ---------------------------------------------


def _hidden(n=45, c=12, v=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g), torch.randn(v, c, generator=g) * 0.5, torch.randint(0, v, (n,), generator=g)


@pytest.mark.parametrize("rows", [1, 16, 45, 256])
def test_linear_cross_entropy_equals_linear_then_textbook_loss_fp32(rows):
    h0, w0, t = _hidden()
    h, w = h0.clone().requires_grad_(), w0.clone().requires_grad_()
    want = F.cross_entropy(h @ w.T, t)
    want.backward()
    h2, w2 = h0.clone().requires_grad_(), w0.clone().requires_grad_()
    got = linear_cross_entropy(h2, w2, t, rows_per_chunk=rows)
    (2.0 * got).backward()
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(h2.grad, 2.0 * h.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(w2.grad, 2.0 * w.grad, atol=1e-6, rtol=1e-5)
    assert h2.grad.dtype == w2.grad.dtype == torch.float32


def test_linear_cross_entropy_under_autocast_matches_nn_linear_under_autocast():
    """Under bf16 autocast the matmuls run in bf16 like nn.Linear's; gradients come back in fp32 (the inputs' dtype)."""
    h0, w0, t = _hidden(n=300, c=64, v=512)
    h, w = h0.clone().requires_grad_(), w0.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = F.cross_entropy((h @ w.T).float(), t)
    want.backward()
    h2, w2 = h0.clone().requires_grad_(), w0.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = linear_cross_entropy(h2, w2, t, rows_per_chunk=128)
    got.backward()
    assert h2.grad.dtype == w2.grad.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    for mine, ref in ((h2.grad, h.grad), (w2.grad, w.grad)):
        assert (mine - ref).abs().max() < 0.02 * ref.abs().max()  # bf16 rounding of the same numbers


def test_linear_cross_entropy_without_grad_and_bad_weight():
    h, w, t = _hidden()
    with torch.no_grad():
        torch.testing.assert_close(linear_cross_entropy(h, w, t), F.cross_entropy(h @ w.T, t))
    with pytest.raises(ValueError, match="expected a weight"):
        linear_cross_entropy(h, w[:, :-1], t)


@pytest.mark.parametrize("tied", [True, False])
def test_lm_loss_is_the_textbook_loss_of_the_model_for_gpt_and_for_other_heads(tied):
    from gpt.lora import apply_lora
    from gpt.model import GPT, GPTConfig
    from gpt.train import lm_loss

    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("course-tiny", vocab_size=300, context_length=16, tie_weights=tied))
    x = torch.randint(0, 300, (3, 16), generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 300, (3, 16), generator=torch.Generator().manual_seed(2))
    want = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    want.backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    got = lm_loss(model, x, y)  # the fused output layer + loss
    got.backward()
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref[n], atol=1e-6, rtol=1e-4, msg=n)
    if tied:
        return
    apply_lora(model, r=2, lora_alpha=4, target_modules=["lm_head"])  # a head that is not a plain Linear: the logits path
    torch.testing.assert_close(lm_loss(model, x, y), F.cross_entropy(model(x).flatten(0, 1), y.flatten()), atol=1e-6, rtol=1e-6)
