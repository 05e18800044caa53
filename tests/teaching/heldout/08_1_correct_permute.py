# exercise: 08.1
# expect: correct
# why: permute(1, 0).clone(memory_format=torch.contiguous_format)
def conv1d_to_linear(weight):
    return weight.permute(1, 0).clone(memory_format=torch.contiguous_format)
