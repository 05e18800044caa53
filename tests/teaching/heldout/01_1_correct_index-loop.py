# exercise: 01.1
# expect: correct
# why: an index loop and setdefault
def count_pairs(ids):
    out = {}
    for i in range(len(ids) - 1):
        out.setdefault((ids[i], ids[i + 1]), 0)
        out[(ids[i], ids[i + 1])] += 1
    return out
