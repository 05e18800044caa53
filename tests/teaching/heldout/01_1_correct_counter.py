# exercise: 01.1
# expect: correct
# why: collections.Counter over zip
from collections import Counter
def count_pairs(ids):
    return dict(Counter(zip(ids, ids[1:])))
