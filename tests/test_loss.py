"""gpt.loss.cross_entropy: the same loss and gradient as F.cross_entropy, in one pass over the logits."""

import pytest
import torch
import torch.nn.functional as F

from gpt.loss import cross_entropy


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
