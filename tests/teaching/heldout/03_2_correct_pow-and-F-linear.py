# exercise: 03.2
# expect: correct
# why: x * x * x and F.linear with the layers' weights
def gelu(x):
    c = (2 / math.pi) ** 0.5
    return x * 0.5 * (1 + torch.tanh(c * (x + 0.044715 * x * x * x)))
def mlp_forward(mlp, x):
    return F.linear(gelu(F.linear(x, mlp.fc.weight, mlp.fc.bias)), mlp.proj.weight, mlp.proj.bias)
