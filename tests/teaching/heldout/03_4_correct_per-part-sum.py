# exercise: 03.4
# expect: correct
# why: sums the parts layer by layer
def parameter_count(cfg):
    V, C, L = cfg.vocab_size, cfg.n_embd, cfg.n_layer
    total = V * C + cfg.context_length * C
    for _ in range(L):
        total += 4 * C                      # two LayerNorms
        total += 3 * (C * C + (C if cfg.qkv_bias else 0))
        total += C * C + C                  # out_proj
        total += (C * 4 * C + 4 * C) + (4 * C * C + C)
    total += 2 * C
    if not cfg.tie_weights:
        total += V * C
    return int(total)
