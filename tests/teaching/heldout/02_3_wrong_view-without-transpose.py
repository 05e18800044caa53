# exercise: 02.3
# expect: wrong
# why: views straight to (B, H, T, D): heads get the wrong numbers
def split_heads(t, n_head):
    B, T, C = t.shape
    return t.reshape(B, n_head, T, C // n_head)
def merge_heads(y):
    B, H, T, D = y.shape
    return y.reshape(B, T, H * D)
