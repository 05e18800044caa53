# exercise: 01.2
# expect: wrong
# why: advances by one after a merge, so [1, 1, 1] gives [9, 9]
def merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id); i += 1
            if i + 1 >= len(ids) or not (ids[i] == pair[0] and ids[i + 1] == pair[1]):
                i += 1
        else:
            out.append(ids[i]); i += 1
    return out
