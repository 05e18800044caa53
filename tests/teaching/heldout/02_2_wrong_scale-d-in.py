# exercise: 02.2
# expect: wrong
# why: divides by sqrt(d_in) instead of sqrt(d_out)
def causal_attention_head(x, W_q, W_k, W_v, mask):
    q, k, v = W_q(x), W_k(x), W_v(x)
    w = torch.softmax((q @ k.T / math.sqrt(x.shape[-1])).masked_fill(mask, float("-inf")), dim=-1)
    return w @ v, w
