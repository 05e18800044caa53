# exercise: 03.3
# expect: wrong
# why: normalises the residual stream itself (post-LN)
def block_forward(block, x):
    x = block.ln1(x + block.attn(x))
    return block.ln2(x + block.mlp(x))
