# exercise: 03.4
# expect: wrong
# why: builds the model and counts, which the exercise rules out
def parameter_count(cfg):
    return count_parameters(GPT(cfg))
