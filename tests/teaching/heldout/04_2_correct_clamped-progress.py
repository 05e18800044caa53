# exercise: 04.2
# expect: correct
# why: clamps the step instead of the progress
def lr_at_step(step, cfg):
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    p = (min(step, cfg.warmup_steps + span) - cfg.warmup_steps) / span
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * p)) / 2
