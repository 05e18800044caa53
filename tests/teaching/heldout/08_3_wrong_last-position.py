# exercise: 08.3
# expect: wrong
# why: reads the last position of the padded batch
def encode_and_pad(texts, tokenizer, max_length):
    seqs = [tokenizer.encode_ordinary(t)[:max_length] for t in texts]
    T = max(len(s) for s in seqs)
    ids = torch.tensor([s + [tokenizer.eot_token] * (T - len(s)) for s in seqs], dtype=torch.long)
    return ids, torch.tensor([len(s) for s in seqs])

def last_token_logits(model, ids, lengths):
    return model.head(model.hidden_states(ids)[:, -1])
