# exercise: 01.3
# expect: correct
# why: keeps pieces in a dict {tuple(ids): count}, helpers inline
from collections import Counter
def learn_merges(text, n_merges):
    words = Counter(tuple(p.encode("utf-8")) for p in pretokenize(text))
    vocab = {i: bytes([i]) for i in range(256)}
    learned = []
    for k in range(n_merges):
        totals = Counter()
        for w, c in words.items():
            for pair in zip(w, w[1:]):
                totals[pair] += c
        if not totals:
            break
        best = min(totals, key=lambda p: (-totals[p], vocab[p[0]] + vocab[p[1]]))
        new = 256 + k
        vocab[new] = vocab[best[0]] + vocab[best[1]]
        merged = Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(new); i += 2
                else:
                    out.append(w[i]); i += 1
            merged[tuple(out)] += c
        words = merged
        learned.append(vocab[new])
    return learned
