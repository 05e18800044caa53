# exercise: 04.4
# expect: wrong
# why: sets the dropped tokens to 0 after the softmax without renormalising
def next_token_probs(logits, temperature=1.0, top_k=None):
    if temperature == 0.0:
        return F.one_hot(logits.argmax(dim=-1), logits.size(-1)).to(logits.dtype)
    p = torch.softmax(logits / temperature, dim=-1)
    if top_k is not None:
        kth = torch.topk(p, min(top_k, p.size(-1)), dim=-1).values[..., -1:]
        p = p.masked_fill(p < kth, 0.0)
    return p
