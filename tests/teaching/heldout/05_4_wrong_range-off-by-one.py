# exercise: 05.4
# expect: wrong
# why: tries k = 0 .. max_extra - 1, never the largest padding
def padding_shift(model, ids, pad_id, max_extra):
    real = last = 0.0
    with torch.no_grad():
        x0, n0 = pad_batch([ids], pad_id)
        base = model(x0, n0)[0]
        for k in range(max_extra):
            x, n = pad_batch([ids], pad_id, pad_to=len(ids) + k)
            real = max(real, (model(x, n)[0] - base).abs().max().item())
            last = max(last, (model(x)[0] - base).abs().max().item())
    return real, last
