# exercise: 08.3
# expect: wrong
# why: always pads with the course tokenizer's 4095
def encode_and_pad(texts, tokenizer, max_length):
    seqs = [tokenizer.encode_ordinary(t)[:max_length] for t in texts]
    T = max(len(s) for s in seqs)
    ids = torch.tensor([s + [4095] * (T - len(s)) for s in seqs], dtype=torch.long)
    return ids, torch.tensor([len(s) for s in seqs])

def last_token_logits(model, ids, lengths):
    h = model.hidden_states(ids)
    return model.head(h[torch.arange(ids.shape[0]), lengths - 1])
