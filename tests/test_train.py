"""Pretraining: schedule, optimizer groups, reproducibility, exact resume, checkpoints, precision."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from gpt.model import GPT, GPTConfig, count_parameters
from gpt.train import (
    CheckpointError,
    TrainConfig,
    evaluate,
    get_batch,
    load_model,
    lr_at,
    make_optimizer,
    pretrain,
    read_checkpoint,
    resolve_precision,
    save_model,
)

VOCAB = 512


def tiny_config(**overrides) -> GPTConfig:
    return GPTConfig.from_preset("course-tiny", vocab_size=VOCAB, context_length=32, **overrides)


def tiny_model(seed=0, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(tiny_config(**overrides))


def token_stream(n=6000, seed=0):
    """A learnable stream: a noisy repeating pattern, so the loss can go down."""
    rng = np.random.default_rng(seed)
    base = np.tile(np.arange(VOCAB // 4), n // (VOCAB // 4) + 1)[:n]
    noise = rng.integers(0, VOCAB, n)
    return np.where(rng.random(n) < 0.2, noise, base).astype(np.uint16)


TRAIN, VAL = token_stream(6000, 0), token_stream(1000, 1)


def cfg(**overrides) -> TrainConfig:
    base = dict(max_steps=8, batch_size=4, lr=3e-3, min_lr=3e-4, warmup_steps=2, eval_interval=4, eval_batches=2,
                precision="fp32", device="cpu", seed=7)
    return TrainConfig(**{**base, **overrides})


# --- schedule and optimizer ----------------------------------------------------------------------


def test_lr_schedule_warmup_then_cosine():
    c = TrainConfig(max_steps=110, warmup_steps=10, lr=1e-3, min_lr=1e-4)
    lrs = [lr_at(s, c) for s in range(c.max_steps + 1)]
    assert lrs[0] == pytest.approx(1e-4)  # (0 + 1) / 10 of the peak
    assert lrs[:10] == pytest.approx([1e-3 * (s + 1) / 10 for s in range(10)])  # linear warmup
    assert lrs[9] == pytest.approx(1e-3) and lrs[10] == pytest.approx(1e-3)  # peak
    assert lrs[60] == pytest.approx((1e-3 + 1e-4) / 2)  # half way through the cosine
    assert lrs[110] == pytest.approx(1e-4)  # ends at min_lr
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # decays monotonically
    assert lr_at(500, c) == pytest.approx(1e-4)  # and stays at min_lr after max_steps
    cos = 1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi * 25 / 100))
    assert lrs[35] == pytest.approx(cos)


def test_lr_schedule_without_warmup():
    c = TrainConfig(max_steps=10, warmup_steps=0, lr=1.0, min_lr=0.0)
    assert lr_at(0, c) == pytest.approx(1.0)
    assert lr_at(10, c) == pytest.approx(0.0)


@pytest.mark.parametrize(
    "kwargs", [dict(max_steps=0), dict(batch_size=0), dict(warmup_steps=20, max_steps=10), dict(precision="fp16")]
)
def test_train_config_validation(kwargs):
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)


def test_weight_decay_only_on_matrices():
    model = tiny_model()
    opt = make_optimizer(model, lr=1e-3, weight_decay=0.1)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() < 2 for p in no_decay["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert {"tok_emb.weight", "pos_emb.weight", "blocks.0.attn.q_proj.weight", "blocks.1.mlp.fc.weight"} <= decayed
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    assert {"ln_f.weight", "ln_f.bias", "blocks.0.ln1.weight", "blocks.0.mlp.fc.bias", "blocks.0.attn.out_proj.bias"} <= not_decayed
    # every parameter exactly once (the tied output weight is the embedding)
    all_params = decay["params"] + no_decay["params"]
    assert len({id(p) for p in all_params}) == len(all_params) == len(list(model.parameters()))
    assert sum(p.numel() for p in all_params) == count_parameters(model)


def test_frozen_parameters_are_left_out_of_the_optimizer():
    model = tiny_model()
    model.tok_emb.weight.requires_grad_(False)
    opt = make_optimizer(model, lr=1e-3, weight_decay=0.1)
    assert all(p is not model.tok_emb.weight for g in opt.param_groups for p in g["params"])


def test_get_batch_is_a_function_of_seed_and_step():
    ids = torch.arange(1000)
    x, y = get_batch(ids, 16, 4, seed=1, step=5)
    assert x.shape == y.shape == (4, 16)
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(x, get_batch(ids, 16, 4, seed=1, step=5)[0])
    assert not torch.equal(x, get_batch(ids, 16, 4, seed=1, step=6)[0])
    assert not torch.equal(x, get_batch(ids, 16, 4, seed=2, step=5)[0])


# --- training runs ------------------------------------------------------------------------------


def test_training_reduces_loss_and_records_history():
    model = tiny_model()
    hist = pretrain(model, TRAIN, VAL, cfg(max_steps=30, eval_interval=10), progress=False)
    assert hist["step"] == list(range(1, 31))
    assert hist["val_step"] == [10, 20, 30]
    assert hist["tokens"][-1] == 30 * 4 * 32
    assert hist["lr"][0] == pytest.approx(1.5e-3)
    assert np.mean(hist["train_loss"][-5:]) < hist["train_loss"][0] - 0.5
    assert hist["train_loss"][0] == pytest.approx(math.log(VOCAB), abs=0.3)  # starts near uniform guessing
    assert hist["precision"] == "fp32" and hist["device"] == "cpu"


def test_same_seed_same_losses():
    a = pretrain(tiny_model(seed=0, dropout=0.1), TRAIN, VAL, cfg(), progress=False)
    b = pretrain(tiny_model(seed=0, dropout=0.1), TRAIN, VAL, cfg(), progress=False)
    c = pretrain(tiny_model(seed=0, dropout=0.1), TRAIN, VAL, cfg(seed=8), progress=False)
    assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]
    assert a["train_loss"] != c["train_loss"]


def test_resume_is_exact(tmp_path):
    c = cfg(max_steps=10, eval_interval=3)
    # uninterrupted
    full_model = tiny_model(seed=0, dropout=0.1)
    full = pretrain(full_model, TRAIN, VAL, c, run_dir=tmp_path / "full", progress=False)
    # interrupted after 4 steps, then resumed into a freshly built (differently initialised) model
    run = tmp_path / "interrupted"
    part = pretrain(tiny_model(seed=0, dropout=0.1), TRAIN, VAL, c, run_dir=run, progress=False, stop_after=4)
    assert part["step"] == [1, 2, 3, 4]
    assert json.loads((run / "state.json").read_text())["step"] == 4
    resumed_model = tiny_model(seed=99, dropout=0.1)
    resumed = pretrain(resumed_model, TRAIN, VAL, c, run_dir=run, resume=True, progress=False)
    assert resumed["step"] == full["step"]
    assert resumed["train_loss"] == full["train_loss"]
    assert resumed["val_step"] == full["val_step"] == [3, 6, 9, 10]
    assert resumed["val_loss"] == full["val_loss"]
    for (name, p), q in zip(full_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(p, q), name


def test_resume_in_two_interruptions(tmp_path):
    c = cfg(max_steps=6, eval_interval=2)
    full = pretrain(tiny_model(), TRAIN, VAL, c, progress=False)
    run = tmp_path / "run"
    for i in range(3):
        model = tiny_model(seed=0 if i == 0 else 5)  # a resumed run loads its weights from the checkpoint
        hist = pretrain(model, TRAIN, VAL, c, run_dir=run, resume=(run / "state.json").exists(), progress=False, stop_after=2)
    assert hist["train_loss"] == full["train_loss"]


def test_resume_refuses_other_config_or_missing_run(tmp_path):
    run = tmp_path / "run"
    pretrain(tiny_model(), TRAIN, VAL, cfg(), run_dir=run, progress=False, stop_after=2)
    with pytest.raises(CheckpointError, match="different TrainConfig"):
        pretrain(tiny_model(), TRAIN, VAL, cfg(lr=1e-3), run_dir=run, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        pretrain(tiny_model(), TRAIN, VAL, cfg(), run_dir=tmp_path / "empty", resume=True, progress=False)


def test_too_short_stream_raises():
    with pytest.raises(ValueError, match="validation token stream has 20 tokens"):
        pretrain(tiny_model(), TRAIN, VAL[:20], cfg(), progress=False)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precisions_run(precision):
    model = tiny_model()
    hist = pretrain(model, TRAIN, VAL, cfg(max_steps=4, precision=precision), progress=False)
    assert hist["precision"] == precision
    assert all(math.isfinite(x) for x in hist["train_loss"] + hist["val_loss"])
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast keeps fp32 weights


def test_bf16_and_fp32_losses_are_close():
    model = tiny_model()
    ids = torch.from_numpy(VAL.astype(np.int64))
    a = evaluate(model, ids, 4, 2, torch.device("cpu"), "fp32")
    b = evaluate(model, ids, 4, 2, torch.device("cpu"), "bf16")
    assert a != b and abs(a - b) < 0.05
    assert evaluate(model, ids, 4, 2, torch.device("cpu"), "fp32") == a  # fixed batches


def test_resolve_precision():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) in ("fp32", "bf16")
    assert resolve_precision("auto", torch.device("mps")) == "fp32"


# --- checkpoints --------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    model = tiny_model(seed=3).eval()
    path = tmp_path / "ckpt" / "model.safetensors"
    save_model(model, path, metadata={"note": "hello", "numbers": [1, 2]})
    loaded = load_model(path).eval()
    assert loaded.config == model.config
    assert loaded.lm_head.weight is loaded.tok_emb.weight  # still tied after loading
    x = torch.randint(0, VOCAB, (2, 32), generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(x), loaded(x))
    config, state, meta = read_checkpoint(path)
    assert "lm_head.weight" not in state  # the tied weight is stored once
    assert meta["note"] == "hello" and json.loads(meta["numbers"]) == [1, 2]
    assert not list(path.parent.glob("*.tmp"))


def test_untied_round_trip(tmp_path):
    model = tiny_model(tie_weights=False).eval()
    save_model(model, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors").eval()
    x = torch.randint(0, VOCAB, (1, 8))
    assert torch.equal(model(x), loaded(x))


def test_load_with_config_override(tmp_path):
    model = tiny_model().eval()
    save_model(model, tmp_path / "m.safetensors")
    explicit = load_model(tmp_path / "m.safetensors", attn_impl="explicit").eval()
    assert explicit.config.attn_impl == "explicit"
    x = torch.randint(0, VOCAB, (1, 16))
    torch.testing.assert_close(model(x), explicit(x), atol=1e-5, rtol=1e-5)


def test_corrupt_checkpoint(tmp_path):
    good = tmp_path / "good.safetensors"
    save_model(tiny_model(), good)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])  # truncated
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        load_model(bad)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        load_model(garbage)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")


def test_checkpoint_with_wrong_shape(tmp_path):
    model = tiny_model()
    state = {k: v.clone() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    state["blocks.1.mlp.fc.weight"] = torch.zeros(100, 32)
    path = tmp_path / "wrong.safetensors"
    save_file(state, str(path), metadata={"gpt_config": json.dumps(model.config.to_dict())})
    with pytest.raises(CheckpointError, match=r"'blocks.1.mlp.fc.weight' has shape \(100, 32\), the model expects \(128, 32\)"):
        load_model(path)


def test_checkpoint_with_missing_and_extra_tensors(tmp_path):
    model = tiny_model()
    state = {k: v.clone() for k, v in model.state_dict().items() if k not in ("lm_head.weight", "ln_f.bias")}
    state["adapter.weight"] = torch.zeros(2, 2)
    path = tmp_path / "m.safetensors"
    save_file(state, str(path), metadata={"gpt_config": json.dumps(model.config.to_dict())})
    with pytest.raises(CheckpointError, match=r"missing \['ln_f.bias'\], unexpected \['adapter.weight'\]"):
        load_model(path)


def test_checkpoint_without_config(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="no 'gpt_config' metadata"):
        load_model(path)
