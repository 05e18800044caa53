# exercise: 06.3
# expect: wrong
# why: leaves the lora_A / lora_B entries in the dict
def merged_state_dict(model):
    with torch.no_grad():
        state = {k: v.clone() for k, v in model.state_dict().items()}
        for name, layer in lora_layers(model):
            state[f"{name}.weight"] = layer.weight + layer.scaling * layer.lora_B.weight @ layer.lora_A.weight
    return state
