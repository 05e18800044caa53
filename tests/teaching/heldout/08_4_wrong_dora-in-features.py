# exercise: 08.4
# expect: wrong
# why: counts DoRA's magnitude per input column instead of per output row
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "out_proj", "fc", "proj")

def lora_trainable_params(n_layer, n_embd, r, num_classes=2, targets=ALL_LINEAR, use_dora=False):
    C = n_embd
    dims = dict(q_proj=(C, C), k_proj=(C, C), v_proj=(C, C), out_proj=(C, C), fc=(C, 4 * C), proj=(4 * C, C))
    return n_layer * sum(r * (i + o) + (i if use_dora else 0) for i, o in (dims[t] for t in targets)) + (C + 1) * num_classes
