# exercise: 02.2
# expect: wrong
# why: builds its own causal mask instead of using the given one
def causal_attention_head(x, W_q, W_k, W_v, mask):
    q, k, v = W_q(x), W_k(x), W_v(x)
    T = x.shape[0]
    own = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    w = torch.softmax((q @ k.T / math.sqrt(q.shape[-1])).masked_fill(own, float("-inf")), dim=-1)
    return w @ v, w
