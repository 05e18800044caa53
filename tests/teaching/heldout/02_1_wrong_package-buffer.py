# exercise: 02.1
# expect: wrong
# why: reads CausalSelfAttention's mask buffer instead of building the mask
def causal_mask(T):
    return CausalSelfAttention(GPTConfig(vocab_size=10, context_length=T, n_embd=4, n_head=1)).causal_mask[:T, :T]
