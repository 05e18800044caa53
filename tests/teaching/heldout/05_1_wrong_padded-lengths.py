# exercise: 05.1
# expect: wrong
# why: returns the padded length for every row
def pad_right(seqs, pad_id, pad_to=None):
    T = pad_to if pad_to is not None else max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return ids, torch.full((len(seqs),), T, dtype=torch.long)
