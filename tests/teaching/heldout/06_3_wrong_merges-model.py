# exercise: 06.3
# expect: wrong
# why: merges the model's own layers with merge_lora (changes model, and is the package's function)
def merged_state_dict(model):
    merged = merge_lora(model)
    return {k: v.clone() for k, v in merged.state_dict().items() if ".lora_" not in k}
