# exercise: 05.1
# expect: correct
# why: pads Python lists, then one tensor
def pad_right(seqs, pad_id, pad_to=None):
    T = pad_to if pad_to is not None else max(len(s) for s in seqs)
    rows = [list(s) + [pad_id] * (T - len(s)) for s in seqs]
    return torch.tensor(rows, dtype=torch.long), torch.tensor([len(s) for s in seqs], dtype=torch.long)
