# exercise: 07.2
# expect: wrong
# why: lets the gradient flow through the row norm
def my_dora_forward(x, W, b, A, B, m, scaling):
    W_plus = W + scaling * B @ A
    y = x @ (m[:, None] * W_plus / W_plus.norm(dim=1)[:, None]).T
    return y if b is None else y + b
