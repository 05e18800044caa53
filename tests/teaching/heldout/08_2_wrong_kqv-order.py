# exercise: 08.2
# expect: wrong
# why: returns key, query, value instead of query, key, value
def split_c_attn(weight, bias, n_embd):
    C = n_embd
    w = weight.t()
    parts = [(w[j * C:(j + 1) * C].contiguous(), bias[j * C:(j + 1) * C].clone()) for j in range(3)]
    return parts[1], parts[0], parts[2]
