# exercise: 05.2
# expect: correct
# why: torch.gather along the time dimension
def last_real_token(h, lengths):
    idx = (lengths - 1).view(-1, 1, 1).expand(-1, 1, h.shape[-1])
    return h.gather(1, idx).squeeze(1)
