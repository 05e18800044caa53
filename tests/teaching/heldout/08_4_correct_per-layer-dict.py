# exercise: 08.4
# expect: correct
# why: a dict of (in, out) per layer name and a sum
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "out_proj", "fc", "proj")

def lora_trainable_params(n_layer, n_embd, r, num_classes=2, targets=ALL_LINEAR, use_dora=False):
    C = n_embd
    dims = dict(q_proj=(C, C), k_proj=(C, C), v_proj=(C, C), out_proj=(C, C), fc=(C, 4 * C), proj=(4 * C, C))
    total = 0
    for t in targets:
        i, o = dims[t]
        total += r * i + r * o + (o if use_dora else 0)
    return n_layer * total + (C + 1) * num_classes
