# exercise: 08.1
# expect: wrong
# why: transposes the argument in place
def conv1d_to_linear(weight):
    return weight.t_().contiguous()
