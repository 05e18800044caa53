# exercise: 04.1
# expect: wrong
# why: calls lm_loss, which the exercise asks you to write
def next_token_loss(model, windows):
    return lm_loss(model, windows[:, :-1], windows[:, 1:])
