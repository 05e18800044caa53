# exercise: 07.2
# expect: correct
# why: computes x (W + s B A)^T first, then scales each output by m / norm (as the package's _dora_forward does)
def my_dora_forward(x, W, b, A, B, m, scaling):
    merged = W + scaling * (B @ A)
    factor = m / torch.linalg.vector_norm(merged, dim=1).detach()
    y = torch.nn.functional.linear(x, merged) * factor
    return y if b is None else y + b
