# exercise: 08.2
# expect: correct
# why: splits the Conv1D columns with torch.split, then transposes each part
def split_c_attn(weight, bias, n_embd):
    ws = torch.split(weight, n_embd, dim=1)
    bs = torch.split(bias, n_embd, dim=0)
    return tuple((w.T.contiguous(), b.clone()) for w, b in zip(ws, bs))
