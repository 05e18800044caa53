# exercise: 07.1
# expect: correct
# why: alpha * r ** -0.5 and a conditional expression
def my_scaling(lora_alpha, r, use_rslora=False):
    return float(lora_alpha * (r ** -0.5 if use_rslora else 1 / r))
