# exercise: 04.3
# expect: wrong
# why: clips the gradients after the optimizer step
def my_train_step(model, optimizer, x, y, lr, grad_clip=1.0):
    for g in optimizer.param_groups:
        g["lr"] = lr
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    return loss.item()
