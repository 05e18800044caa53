# exercise: 06.3
# expect: wrong
# why: adds B A without the scaling
def merged_state_dict(model):
    with torch.no_grad():
        state = {k: v.clone() for k, v in model.state_dict().items() if ".lora_" not in k}
        for name, layer in lora_layers(model):
            state[f"{name}.weight"] = layer.weight + layer.lora_B.weight @ layer.lora_A.weight
    return state
