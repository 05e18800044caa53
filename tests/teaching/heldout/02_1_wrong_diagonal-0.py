# exercise: 02.1
# expect: wrong
# why: hides the diagonal too: a token cannot see itself
def causal_mask(T):
    return torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=0)
