# exercise: 01.1
# expect: wrong
# why: skips after a pair, so (a, a) in 'aaa' counts once
def count_pairs(ids):
    out, i = {}, 0
    while i < len(ids) - 1:
        p = (ids[i], ids[i + 1])
        out[p] = out.get(p, 0) + 1
        i += 2 if ids[i] == ids[i + 1] else 1
    return out
