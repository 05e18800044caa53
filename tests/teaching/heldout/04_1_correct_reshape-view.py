# exercise: 04.1
# expect: correct
# why: reshape to (B*T, V) and nn.CrossEntropyLoss
def next_token_loss(model, windows):
    x, y = windows[:, :-1], windows[:, 1:]
    logits = model(x)
    return torch.nn.CrossEntropyLoss()(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
