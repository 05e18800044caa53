# exercise: 04.3
# expect: wrong
# why: never clears the gradients, so they pile up over the steps
def my_train_step(model, optimizer, x, y, lr, grad_clip=1.0):
    for g in optimizer.param_groups:
        g["lr"] = lr
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()
