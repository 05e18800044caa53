# exercise: 03.1
# expect: wrong
# why: adds eps outside the square root
def layer_norm(x, weight, bias, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True, unbiased=False).sqrt() + eps) * weight + bias
