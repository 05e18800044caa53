# exercise: 01.4
# expect: correct
# why: computes N, then indexes with arange
def sliding_windows(ids, context_length, stride):
    t = torch.tensor(list(map(int, ids)), dtype=torch.long) if not torch.is_tensor(ids) else ids.long()
    n = (len(t) - context_length - 1) // stride + 1
    starts = torch.arange(n) * stride
    idx = starts[:, None] + torch.arange(context_length)[None, :]
    return t[idx], t[idx + 1]
