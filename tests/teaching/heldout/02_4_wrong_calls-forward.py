# exercise: 02.4
# expect: wrong
# why: calls the layer's forward through the class, bypassing attn(x)
def multi_head_attention(x, attn):
    return type(attn).forward(attn, x)
