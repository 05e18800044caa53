# exercise: 07.4
# expect: wrong
# why: puts frozen parameters into the slow group too
def my_loraplus_groups(model, lr, ratio=16.0):
    fast_ids = {id(layer.lora_B.weight) for _, layer in lora_layers(model)}
    params = list(model.parameters())
    fast = [p for p in params if p.requires_grad and (id(p) in fast_ids or p.dim() == 1)]
    slow = [p for p in params if not any(p is q for q in fast)]
    return [{"params": slow, "lr": lr}, {"params": fast, "lr": lr * ratio}]
