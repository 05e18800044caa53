# exercise: 03.1
# expect: correct
# why: mean of squares and torch.rsqrt
def layer_norm(x, weight, bias, eps=1e-5):
    centred = x - x.mean(-1, keepdim=True)
    return centred * torch.rsqrt((centred ** 2).mean(-1, keepdim=True) + eps) * weight + bias
