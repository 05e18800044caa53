# exercise: 03.4
# expect: wrong
# why: counts q, k, v biases even without qkv_bias
def parameter_count(cfg):
    V, C, L = cfg.vocab_size, cfg.n_embd, cfg.n_layer
    block = 4 * C + 3 * (C * C + C) + C * C + C + 8 * C * C + 5 * C
    return V * C + cfg.context_length * C + L * block + 2 * C + (0 if cfg.tie_weights else V * C)
