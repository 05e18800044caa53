# exercise: 06.2
# expect: correct
# why: A initialised like a linear layer's weight: fan-in = in (as PyTorch and PEFT do)
class LoRALayer(nn.Module):
    def __init__(self, in_dim, out_dim, rank, alpha):
        super().__init__()
        a = torch.empty(rank, in_dim)
        nn.init.kaiming_uniform_(a, a=math.sqrt(5))   # nn.Linear's weight init: fan-in = in_dim
        self.A = nn.Parameter(a.T.contiguous())
        self.B = nn.Parameter(torch.zeros(rank, out_dim))
        self.alpha = alpha
    def forward(self, x):
        return self.alpha * ((x @ self.A) @ self.B)

class LinearWithLoRA(nn.Module):
    def __init__(self, linear, rank, alpha):
        super().__init__()
        self.linear = linear
        self.lora = LoRALayer(linear.in_features, linear.out_features, rank, alpha)
    def forward(self, x):
        return self.linear(x) + self.lora(x)

def replace_linear_with_lora(model, rank, alpha):
    for name, module in list(model.named_children()):
        if isinstance(module, nn.Linear):
            setattr(model, name, LinearWithLoRA(module, rank, alpha))
        else:
            replace_linear_with_lora(module, rank, alpha)
