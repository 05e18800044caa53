# exercise: 01.3
# expect: wrong
# why: counts each distinct piece once instead of by its frequency
def learn_merges(text, n_merges):
    pieces = [list(p.encode("utf-8")) for p in set(pretokenize(text))]
    vocab = {i: bytes([i]) for i in range(256)}
    learned = []
    for k in range(n_merges):
        totals = {}
        for ids in pieces:
            for pair in zip(ids, ids[1:]):
                totals[pair] = totals.get(pair, 0) + 1
        if not totals:
            break
        best = min(totals, key=lambda p: (-totals[p], vocab[p[0]] + vocab[p[1]]))
        vocab[256 + k] = vocab[best[0]] + vocab[best[1]]
        new_pieces = []
        for ids in pieces:
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == best:
                    out.append(256 + k); i += 2
                else:
                    out.append(ids[i]); i += 1
            new_pieces.append(out)
        pieces = new_pieces
        learned.append(vocab[256 + k])
    return learned
