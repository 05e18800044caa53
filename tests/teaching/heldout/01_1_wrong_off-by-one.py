# exercise: 01.1
# expect: wrong
# why: drops the last pair
def count_pairs(ids):
    out = {}
    for i in range(len(ids) - 2):
        out[(ids[i], ids[i + 1])] = out.get((ids[i], ids[i + 1]), 0) + 1
    return out
