# exercise: 06.1
# expect: wrong
# why: builds the LoRA model with apply_lora and counts, which the exercise rules out
def lora_trainable_parameters(model, r, target_modules=None, train_head=True):
    return count_lora_parameters(apply_lora(copy.deepcopy(model), r=r, lora_alpha=1, target_modules=target_modules, train_head=train_head))["trainable"]
