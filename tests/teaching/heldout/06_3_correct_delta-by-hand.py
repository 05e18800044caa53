# exercise: 06.3
# expect: correct
# why: builds the plain dict from scratch, merging with torch.addmm
def merged_state_dict(model):
    lora = dict(lora_layers(model))
    out = {}
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if "lora_" in key:
                continue
            owner = key[: -len(".weight")] if key.endswith(".weight") else None
            if owner in lora:
                l = lora[owner]
                out[key] = torch.addmm(value, l.lora_B.weight, l.lora_A.weight, alpha=l.scaling)
            else:
                out[key] = value.clone()
    return out
