# exercise: 06.2
# expect: correct
# why: collects the targets with named_modules first, then replaces through the parents
class LoRALayer(nn.Module):
    def __init__(self, in_dim, out_dim, rank, alpha):
        super().__init__()
        self.A = nn.Parameter(nn.init.kaiming_uniform_(torch.empty(in_dim, rank), a=math.sqrt(5)))
        self.B = nn.Parameter(torch.zeros(rank, out_dim))
        self.alpha = alpha
    def forward(self, x):
        return self.alpha * (x @ (self.A @ self.B))

class LinearWithLoRA(nn.Module):
    def __init__(self, linear, rank, alpha):
        super().__init__()
        self.linear = linear
        self.lora = LoRALayer(linear.in_features, linear.out_features, rank, alpha)
    def forward(self, x):
        return self.lora(x) + self.linear(x)

def replace_linear_with_lora(model, rank, alpha):
    targets = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LinearWithLoRA(getattr(parent, child), rank, alpha))
    return model
