# exercise: 04.4
# expect: correct
# why: finds the k-th score by sorting; greedy via scatter
def next_token_probs(logits, temperature=1.0, top_k=None):
    if temperature == 0:
        out = torch.zeros_like(logits)
        return out.scatter(-1, logits.argmax(-1, keepdim=True), 1.0)
    s = logits / temperature
    if top_k is not None and top_k < s.shape[-1]:
        kth = s.sort(dim=-1, descending=True).values[..., top_k - 1:top_k]
        s = torch.where(s < kth, torch.tensor(float("-inf")), s)
    return s.softmax(dim=-1)
