# exercise: 03.5
# expect: wrong
# why: appends to the cropped ids, losing the start of a long prompt
def generate_tokens(model, idx, max_new_tokens, temperature=0.0, generator=None):
    with torch.no_grad():
        for _ in range(max_new_tokens):
            idx = idx[:, -model.config.context_length:]
            logits = model(idx)[:, -1, :]
            if temperature == 0.0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                nxt = torch.multinomial(torch.softmax(logits / temperature, -1), num_samples=1, generator=generator)
            idx = torch.cat([idx, nxt], dim=1)
    return idx
