# exercise: 08.3
# expect: correct
# why: pads with lists and reads the last states with gather
def encode_and_pad(texts, tokenizer, max_length):
    seqs = [tokenizer.encode_ordinary(t)[:max_length] for t in texts]
    T = max(len(s) for s in seqs)
    ids = torch.tensor([s + [tokenizer.eot_token] * (T - len(s)) for s in seqs], dtype=torch.long)
    return ids, torch.tensor([len(s) for s in seqs])

def last_token_logits(model, ids, lengths):
    h = model.hidden_states(ids)
    idx = (torch.as_tensor(lengths) - 1)[:, None, None].expand(-1, 1, h.shape[-1])
    return model.head(h.gather(1, idx)[:, 0])
