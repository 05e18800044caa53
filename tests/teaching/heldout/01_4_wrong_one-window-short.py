# exercise: 01.4
# expect: wrong
# why: stops one window early (range end off by one)
def sliding_windows(ids, context_length, stride):
    ids = torch.as_tensor(ids, dtype=torch.long)
    starts = range(0, len(ids) - context_length - 1, stride)
    return (torch.stack([ids[s:s + context_length] for s in starts]), torch.stack([ids[s + 1:s + context_length + 1] for s in starts]))
