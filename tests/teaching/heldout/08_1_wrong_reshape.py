# exercise: 08.1
# expect: wrong
# why: reshapes to (out, in): the right shape, the wrong numbers
def conv1d_to_linear(weight):
    return weight.reshape(weight.shape[1], weight.shape[0]).contiguous()
