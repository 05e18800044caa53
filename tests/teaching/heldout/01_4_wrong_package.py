# exercise: 01.4
# expect: wrong
# why: uses TokenWindowDataset, which the exercise asks you to write
def sliding_windows(ids, context_length, stride):
    ds = TokenWindowDataset(ids, context_length, stride)
    return torch.stack([ds[i][0] for i in range(len(ds))]), torch.stack([ds[i][1] for i in range(len(ds))])
