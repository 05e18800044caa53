# exercise: 01.3
# expect: wrong
# why: calls train_bpe, which the exercise asks you to write
def learn_merges(text, n_merges):
    enc = train_bpe(text, vocab_size=256 + n_merges + 1)
    return [enc.decode_single_token_bytes(256 + i) for i in range(n_merges)]
