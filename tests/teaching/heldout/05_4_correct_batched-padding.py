# exercise: 05.4
# expect: correct
# why: runs every padding length in its own pad_batch call, collects all shifts, takes the max
def padding_shift(model, ids, pad_id, max_extra):
    real, last = [0.0], [0.0]
    with torch.no_grad():
        base = model(torch.tensor([ids]), torch.tensor([len(ids)]))[0]
        for k in range(1, max_extra + 1):
            x, n = pad_batch([ids], pad_id, pad_to=len(ids) + k)
            real.append(float((model(x, n)[0] - base).abs().max()))
            last.append(float((model(x)[0] - base).abs().max()))
    return max(real), max(last)
