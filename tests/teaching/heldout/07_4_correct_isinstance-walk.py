# exercise: 07.4
# expect: correct
# why: finds the B factors by walking the modules with isinstance(m, LoRALinear)
def my_loraplus_groups(model, lr, ratio=16.0):
    fast_ids = {id(m.lora_B.weight) for m in model.modules() if isinstance(m, LoRALinear)}
    slow, fast = [], []
    for p in model.parameters():
        if p.requires_grad:
            (fast if id(p) in fast_ids or p.ndim == 1 else slow).append(p)
    return [{"params": slow, "lr": lr}, {"params": fast, "lr": lr * ratio}]
