# exercise: 04.3
# expect: wrong
# why: sets the learning rate of the first parameter group only
def my_train_step(model, optimizer, x, y, lr, grad_clip=1.0):
    optimizer.param_groups[0]["lr"] = lr
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()
