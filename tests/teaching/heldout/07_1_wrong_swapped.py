# exercise: 07.1
# expect: wrong
# why: uses sqrt for plain LoRA and r for rsLoRA
def my_scaling(lora_alpha, r, use_rslora=False):
    return lora_alpha / r if use_rslora else lora_alpha / math.sqrt(r)
