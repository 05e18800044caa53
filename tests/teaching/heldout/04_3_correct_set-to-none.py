# exercise: 04.3
# expect: correct
# why: zero_grad(set_to_none=True) before the forward pass, reshape-based loss
def my_train_step(model, optimizer, x, y, lr, grad_clip=1.0):
    optimizer.zero_grad(set_to_none=True)
    for g in optimizer.param_groups:
        g.update(lr=lr)
    logits = model(x)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(model.parameters()), max_norm=grad_clip)
    optimizer.step()
    return float(loss)
