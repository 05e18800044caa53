# exercise: 03.1
# expect: wrong
# why: calls F.layer_norm, which the exercise asks you to write
def layer_norm(x, weight, bias, eps=1e-5):
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)
