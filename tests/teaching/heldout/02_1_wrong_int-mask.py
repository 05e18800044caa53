# exercise: 02.1
# expect: wrong
# why: an integer 0/1 tensor, not torch.bool
def causal_mask(T):
    return torch.triu(torch.ones(T, T, dtype=torch.long), diagonal=1)
