# exercise: 05.4
# expect: wrong
# why: compares against the unpadded message read at its last position, and measures the last-real reading with lengths + k
def padding_shift(model, ids, pad_id, max_extra):
    real = last = 0.0
    with torch.no_grad():
        base = model(torch.tensor([ids]))[0]
        for k in range(1, max_extra + 1):
            x, n = pad_batch([ids], pad_id, pad_to=len(ids) + k)
            real = max(real, (model(x, n + k)[0] - base).abs().max().item())
            last = max(last, (model(x)[0] - base).abs().max().item())
    return real, last
