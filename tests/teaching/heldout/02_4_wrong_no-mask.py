# exercise: 02.4
# expect: wrong
# why: forgets the causal mask
def multi_head_attention(x, attn):
    B, T, C = x.shape
    H, D = attn.n_head, C // attn.n_head
    q, k, v = (p(x).view(B, T, H, D).transpose(1, 2) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D), dim=-1)
    return attn.out_proj((w @ v).transpose(1, 2).reshape(B, T, C))
