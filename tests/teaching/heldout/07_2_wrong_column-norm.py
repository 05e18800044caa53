# exercise: 07.2
# expect: wrong
# why: normalises the columns (dim=0) instead of the rows
def my_dora_forward(x, W, b, A, B, m, scaling):
    W_plus = W + scaling * B @ A
    col = W_plus.norm(dim=0).detach()
    y = x @ (m[:, None] * W_plus / col[None, :]).T
    return y if b is None else y + b
