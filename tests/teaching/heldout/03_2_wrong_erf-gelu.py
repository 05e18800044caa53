# exercise: 03.2
# expect: wrong
# why: the exact (erf) GELU instead of the tanh approximation
def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
def mlp_forward(mlp, x):
    return mlp.proj(gelu(mlp.fc(x)))
