# exercise: 03.5
# expect: correct
# why: torch.inference_mode, softmax then multinomial, cropping with a max
def generate_tokens(model, idx, max_new_tokens, temperature=0.0, generator=None):
    ctx = model.config.context_length
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            start = max(0, idx.shape[1] - ctx)
            logits = model(idx[:, start:])[:, -1]
            if temperature == 0:
                nxt = torch.argmax(logits, dim=-1)[:, None]
            else:
                nxt = torch.multinomial(torch.softmax(logits / temperature, dim=-1), num_samples=1, generator=generator)
            idx = torch.cat((idx, nxt), dim=1)
    return idx
