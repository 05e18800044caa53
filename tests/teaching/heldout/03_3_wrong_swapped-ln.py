# exercise: 03.3
# expect: wrong
# why: uses ln2 before attention and ln1 before the MLP
def block_forward(block, x):
    x = x + block.attn(block.ln2(x))
    return x + block.mlp(block.ln1(x))
