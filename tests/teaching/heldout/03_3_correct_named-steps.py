# exercise: 03.3
# expect: correct
# why: names both sub-layer outputs
def block_forward(block, x):
    attended = block.attn(block.ln1(x))
    h = x + attended
    return h + block.mlp(block.ln2(h))
