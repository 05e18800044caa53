# exercise: 08.2
# expect: wrong
# why: splits the rows of the untransposed weight
def split_c_attn(weight, bias, n_embd):
    C = n_embd
    w = weight.reshape(3 * C, C)
    return tuple((w[j * C:(j + 1) * C].contiguous(), bias[j * C:(j + 1) * C].clone()) for j in range(3))
