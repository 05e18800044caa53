# exercise: 05.2
# expect: wrong
# why: reads position lengths instead of lengths - 1 (clamped to stay in range)
def last_real_token(h, lengths):
    return h[torch.arange(h.shape[0]), lengths.clamp(max=h.shape[1] - 1)]
