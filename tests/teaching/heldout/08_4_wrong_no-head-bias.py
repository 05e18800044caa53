# exercise: 08.4
# expect: wrong
# why: forgets the head's bias
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "out_proj", "fc", "proj")

def lora_trainable_params(n_layer, n_embd, r, num_classes=2, targets=ALL_LINEAR, use_dora=False):
    C = n_embd
    dims = dict(q_proj=(C, C), k_proj=(C, C), v_proj=(C, C), out_proj=(C, C), fc=(C, 4 * C), proj=(4 * C, C))
    return n_layer * sum(r * (i + o) + (o if use_dora else 0) for i, o in (dims[t] for t in targets)) + C * num_classes
