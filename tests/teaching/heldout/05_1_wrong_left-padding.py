# exercise: 05.1
# expect: wrong
# why: pads on the left
def pad_right(seqs, pad_id, pad_to=None):
    T = pad_to if pad_to is not None else max(len(s) for s in seqs)
    rows = [[pad_id] * (T - len(s)) + list(s) for s in seqs]
    return torch.tensor(rows, dtype=torch.long), torch.tensor([len(s) for s in seqs], dtype=torch.long)
