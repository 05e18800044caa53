# exercise: 04.1
# expect: correct
# why: log_softmax and gather
def next_token_loss(model, windows):
    logits = model(windows[:, :-1])
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -logp.gather(-1, windows[:, 1:, None]).mean()
