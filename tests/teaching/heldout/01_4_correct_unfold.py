# exercise: 01.4
# expect: correct
# why: Tensor.unfold and a slice for the count
def sliding_windows(ids, context_length, stride):
    t = torch.as_tensor(ids, dtype=torch.long)
    w = t.unfold(0, context_length + 1, stride)
    return w[:, :-1].contiguous(), w[:, 1:].contiguous()
