# exercise: 03.2
# expect: wrong
# why: the MLP with ReLU in place of the GELU
def gelu(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
def mlp_forward(mlp, x):
    return mlp.proj(torch.relu(mlp.fc(x)))
