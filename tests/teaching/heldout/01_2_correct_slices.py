# exercise: 01.2
# expect: correct
# why: compares slices instead of elements
def merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if tuple(ids[i:i + 2]) == tuple(pair):
            out.append(new_id); i += 2
        else:
            out.append(ids[i]); i += 1
    return out
