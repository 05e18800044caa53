# exercise: 02.4
# expect: correct
# why: einsum for both products, a boolean triu for the mask
def multi_head_attention(x, attn):
    B, T, C = x.shape
    H = attn.n_head
    D = C // H
    q, k, v = (p(x).reshape(B, T, H, D).permute(0, 2, 1, 3) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
    s = torch.einsum("bhtd,bhsd->bhts", q, k) / D ** 0.5
    s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    y = torch.einsum("bhts,bhsd->bhtd", s.softmax(-1), v)
    return attn.out_proj(y.permute(0, 2, 1, 3).reshape(B, T, C))
