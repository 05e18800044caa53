# exercise: 07.3
# expect: correct
# why: flips the sign of every direction (allowed: a singular direction's sign is arbitrary)
def my_pissa(W, r, scaling):
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    root = (S[:r] / scaling).sqrt()
    A = -(root[:, None] * Vh[:r])
    B = -(U[:, :r] * root)
    return A, B, W - scaling * (B @ A)
