# exercise: 06.1
# expect: wrong
# why: counts the head as a wrapped layer too
def lora_trainable_parameters(model, r, target_modules=None, train_head=True):
    total = 0
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and (target_modules is None or name.split(".")[-1] in target_modules):
            total += r * (m.in_features + m.out_features)
    return total + (sum(p.numel() for p in model.head.parameters()) if train_head else 0)
