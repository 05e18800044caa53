# exercise: 03.5
# expect: wrong
# why: never crops to the context, so it fails past 64 tokens
def generate_tokens(model, idx, max_new_tokens, temperature=0.0, generator=None):
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(idx)[:, -1, :]
            if temperature == 0.0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                nxt = torch.multinomial(torch.softmax(logits / temperature, -1), num_samples=1, generator=generator)
            idx = torch.cat([idx, nxt], dim=1)
    return idx
