# exercise: 04.4
# expect: wrong
# why: multiplies by the temperature instead of dividing
def next_token_probs(logits, temperature=1.0, top_k=None):
    if temperature == 0.0:
        return F.one_hot(logits.argmax(dim=-1), logits.size(-1)).to(logits.dtype)
    scores = logits * temperature
    if top_k is not None:
        kth = torch.topk(scores, min(top_k, scores.size(-1)), dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    return torch.softmax(scores, dim=-1)
