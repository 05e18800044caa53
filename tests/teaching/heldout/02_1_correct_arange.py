# exercise: 02.1
# expect: correct
# why: compares column and row indices
def causal_mask(T):
    i = torch.arange(T)
    return i[None, :] > i[:, None]
