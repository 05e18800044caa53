# exercise: 05.2
# expect: correct
# why: a loop over the rows
def last_real_token(h, lengths):
    return torch.stack([h[b, int(n) - 1] for b, n in enumerate(lengths)])
