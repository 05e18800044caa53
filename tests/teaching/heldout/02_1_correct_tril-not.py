# exercise: 02.1
# expect: correct
# why: the complement of the lower triangle
def causal_mask(T):
    return ~torch.tril(torch.ones(T, T, dtype=torch.bool))
