# exercise: 03.1
# expect: wrong
# why: the sample variance (divides by C - 1)
def layer_norm(x, weight, bias, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) * weight + bias
