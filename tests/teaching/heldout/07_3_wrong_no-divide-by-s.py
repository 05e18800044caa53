# exercise: 07.3
# expect: wrong
# why: forgets to divide S by the scaling
def my_pissa(W, r, scaling):
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    root = S[:r].sqrt()
    A, B = root[:, None] * Vh[:r], U[:, :r] * root
    return A, B, W - scaling * B @ A
