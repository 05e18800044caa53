# exercise: 02.3
# expect: correct
# why: reshape and permute instead of view and transpose
def split_heads(t, n_head):
    B, T, C = t.shape
    return t.reshape(B, T, n_head, C // n_head).permute(0, 2, 1, 3)
def merge_heads(y):
    B, H, T, D = y.shape
    return y.permute(0, 2, 1, 3).contiguous().view(B, T, H * D)
