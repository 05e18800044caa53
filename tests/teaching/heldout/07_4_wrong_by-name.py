# exercise: 07.4
# expect: wrong
# why: finds the B factors by name, so a layer merely called lora_B is fast too
def my_loraplus_groups(model, lr, ratio=16.0):
    slow, fast = [], []
    for n, p in model.named_parameters():
        if p.requires_grad:
            (fast if "lora_B" in n or p.ndim == 1 else slow).append(p)
    return [{"params": slow, "lr": lr}, {"params": fast, "lr": lr * ratio}]
