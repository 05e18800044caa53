# exercise: 06.1
# expect: correct
# why: walks the blocks' modules, targets matched on the attribute name
def lora_trainable_parameters(model, r, target_modules=None, train_head=True):
    total = 0
    for block in model.gpt.blocks:
        for name, m in block.named_modules():
            if isinstance(m, nn.Linear) and (target_modules is None or name.split(".")[-1] in target_modules):
                total += r * (m.in_features + m.out_features)
    return total + (sum(p.numel() for p in model.head.parameters()) if train_head else 0)
