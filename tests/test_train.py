"""Pretraining: schedule, optimizer groups, reproducibility, exact resume, atomic checkpoints that refuse
to mix runs, interrupts, precision, and one clear error for every bad input."""

import dataclasses
import json
import math
import os
import signal
import threading

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import gpt.io.checkpoint as checkpoint_module
import gpt.runtime.tools as tools
import gpt.train as train_module
from gpt.errors import CheckpointError, ConfigError, OutputExistsError
from gpt.model import GPT, GPTConfig, count_parameters
from gpt.io.checkpoint import TrainingInterrupted
from gpt.io.resume import check_resume, load_training_state, read_training_state
from gpt.io.weights import load_model, read_checkpoint, save_model
from gpt.runtime.device import cpu_has_fast_bf16, pick_device, resolve_precision
from gpt.train import evaluate, get_batch, lr_at, make_optimizer, pretrain, train_step
from gpt.train_config import TrainConfig

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
    "kwargs, phrase",
    [
        (dict(max_steps=0), "max_steps must be a whole number >= 1"),
        (dict(max_steps=2.5), "max_steps must be a whole number"),
        (dict(batch_size=0), "batch_size must be a whole number >= 1"),
        (dict(warmup_steps=20, max_steps=10), "warmup_steps (20) must be between 0 and max_steps (10)"),
        (dict(warmup_steps=-1), "warmup_steps must be a whole number >= 0"),
        (dict(precision="fp16"), "precision must be one of ['auto', 'bf16', 'fp32'], got 'fp16'"),
        (dict(eval_interval=0), "eval_interval must be a whole number >= 1"),
        (dict(eval_batches=0), "eval_batches must be a whole number >= 1"),
        (dict(lr=0.0), "lr must be a finite number > 0"),
        (dict(lr=float("nan")), "lr must be a finite number > 0"),
        (dict(lr=1e-3, min_lr=1e-2), "min_lr must be between 0 and lr"),
        (dict(min_lr=-1e-4), "min_lr must be between 0 and lr"),
        (dict(grad_clip=-1.0), "grad_clip must be None or a finite number >= 0"),
        (dict(grad_clip=float("inf")), "grad_clip must be None or a finite number >= 0"),
        (dict(checkpoint_interval=-1), "checkpoint_interval must be a whole number >= 0"),
        (dict(weight_decay=-0.1), "weight_decay must be a finite number >= 0"),
        (dict(betas=(1.0, 0.95)), "betas must be two numbers in [0, 1)"),
        (dict(betas=(0.9,)), "betas must be two numbers in [0, 1)"),
        (dict(betas=0.9), "betas must be two numbers in [0, 1)"),
        (dict(seed=1.5), "seed must be a whole number"),
        (dict(device=""), "device must be 'auto' or a torch device"),
        (dict(compile="yes"), "compile must be True or False"),
    ],
)
def test_train_config_validation(kwargs, phrase):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**kwargs)
    assert phrase in str(e.value)
    assert isinstance(e.value, ValueError)  # `except ValueError` keeps working


def test_train_config_accepts_edge_values():
    c = TrainConfig(max_steps=1, warmup_steps=1, min_lr=0.0, grad_clip=None, betas=[0.0, 0.5], checkpoint_interval=0)
    assert c.betas == (0.0, 0.5) and c.grad_clip is None
    assert TrainConfig(lr=1e-3, min_lr=1e-3).min_lr == 1e-3  # a constant schedule


@pytest.mark.parametrize("device, phrase", [("gpu", "is not a device"), ("cuda:99", "CUDA")])
def test_pick_device_refuses_unknown_or_missing_devices(device, phrase):
    with pytest.raises(ConfigError, match=phrase):
        pick_device(device)


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


def test_fused_adamw_is_the_default_on_cpu_and_takes_the_same_step():
    """make_optimizer picks PyTorch's fused AdamW on a CPU; the update equals the plain for-loop AdamW's."""
    a, b = tiny_model(seed=2), tiny_model(seed=2)
    fused, plain = make_optimizer(a, 1e-2, 0.1), make_optimizer(b, 1e-2, 0.1, fused=False)
    assert all(g["fused"] for g in fused.param_groups) and not any(g["fused"] for g in plain.param_groups)
    x, y = get_batch(torch.from_numpy(TRAIN.astype(np.int64)), 32, 4, seed=0, step=0)
    for model, opt in ((a, fused), (b, plain)):
        for _ in range(3):
            train_step(model, opt, x, y, 1e-2, cfg(), torch.device("cpu"), "fp32")
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, atol=1e-6, rtol=1e-5, msg=name)
    assert not torch.equal(a.blocks[0].mlp.fc.weight, tiny_model(seed=2).blocks[0].mlp.fc.weight)  # it did train


def test_train_step_clips_the_gradient_and_returns_the_loss():
    model = tiny_model()
    opt = make_optimizer(model, 1.0, 0.0)
    x, y = get_batch(torch.from_numpy(TRAIN.astype(np.int64)), 32, 4, seed=0, step=0)
    loss = train_step(model, opt, x, y, 0.5, cfg(grad_clip=1e-3), torch.device("cpu"), "fp32")
    assert isinstance(loss, float) and math.isfinite(loss)
    assert all(g["lr"] == 0.5 for g in opt.param_groups)
    norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters() if p.grad is not None))
    assert abs(float(norm) - 1e-3) < 1e-6  # the gradient the step used was clipped to grad_clip


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
    part = pretrain(tiny_model(seed=0, dropout=0.1), TRAIN, VAL, dataclasses.replace(c, stop_after=4), run_dir=run, progress=False)
    assert part["step"] == [1, 2, 3, 4]
    assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 4
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint"]  # no temporary folder left behind
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
        hist = pretrain(model, TRAIN, VAL, dataclasses.replace(c, stop_after=2), run_dir=run, resume=(run / "checkpoint").exists(), progress=False)
    assert hist["step"] == list(range(1, 7))
    assert hist["train_loss"] == full["train_loss"]


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
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_fast_bf16() else "fp32")
    assert resolve_precision("auto", torch.device("mps")) == "fp32"


def test_auto_precision_on_cuda_is_bf16_only_where_native(monkeypatch):
    """A GPU that only emulates bf16 (e.g. Colab's T4) trains in fp32; Ampere and newer in bf16."""
    for native, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, n=native: n or including_emulation)
        assert resolve_precision("auto", torch.device("cuda")) == want


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


def test_checkpoint_folder_name_in_error(tmp_path):
    save_model(tiny_model(), tmp_path / "run" / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"is a folder, but a checkpoint file .* did you mean .*model.safetensors"):
        load_model(tmp_path / "run")


@pytest.mark.parametrize(
    "gpt_config, phrase",
    [
        ('{"vocab_size": 512, "n_layer": ', "'gpt_config' metadata is not valid JSON"),
        ('{"vocab_size": 512, "n_head": 0}', "not a valid model configuration"),
        ('{"vocab_size": 512, "n_layers": 2}', "not a valid model configuration"),
        ("[1, 2, 3]", "not a valid model configuration"),
    ],
)
def test_malformed_gpt_config_metadata(tmp_path, gpt_config, phrase):
    path = tmp_path / "bad_meta.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"gpt_config": gpt_config})
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(path)
    assert phrase in str(e.value) and str(path) in str(e.value)


def _nan_checkpoint(tmp_path, name="blocks.0.mlp.fc.weight"):
    model = tiny_model()
    state = {k: v.clone() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    state[name][3, 4] = float("nan")
    path = tmp_path / "nan.safetensors"
    save_file(state, str(path), metadata={"gpt_config": json.dumps(model.config.to_dict())})
    return path


def test_non_finite_weights_are_refused(tmp_path):
    path = _nan_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match=r"tensor 'blocks.0.mlp.fc.weight' holds 1 NaN or infinite value"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"blocks.0.mlp.fc.weight"):
        load_model(path)


# --- training checkpoints: one unit, verified on resume -------------------------------------------


def _runs_equal(a: GPT, b: GPT) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


RUN_INFO = {"books": ["pg35"], "val_fraction": 0.05, "preset": "course-tiny", "tokenizer_fingerprint": "abc"}


@pytest.fixture
def half_run(tmp_path):
    """A run stopped after 4 of 8 steps, with a checkpoint."""
    run = tmp_path / "run"
    pretrain(tiny_model(), TRAIN, VAL, cfg(stop_after=4), run_dir=run, progress=False, run_info=RUN_INFO)
    return run


def test_checkpoint_layout_and_state(half_run):
    ckpt = half_run / "checkpoint"
    assert sorted(p.name for p in ckpt.iterdir()) == ["model.safetensors", "optimizer.safetensors", "state.json"]
    state = read_training_state(half_run)
    assert state["step"] == 4 and state["run"] == RUN_INFO
    import hashlib

    for name in ("model.safetensors", "optimizer.safetensors"):
        assert state["files"][name] == hashlib.sha256((ckpt / name).read_bytes()).hexdigest()
    assert state["model_config"] == tiny_config().to_dict()
    assert state["data"]["training tokens"] == len(TRAIN)
    # the checkpoint's weights are a model file: load_model reads them
    assert load_model(ckpt / "model.safetensors").config == tiny_config()
    _, _, meta = read_checkpoint(ckpt / "model.safetensors")
    assert meta["tokenizer_fingerprint"] == "abc"


def test_resume_refuses_other_train_config(half_run):
    with pytest.raises(CheckpointError) as e:
        pretrain(tiny_model(), TRAIN, VAL, cfg(lr=1e-3), run_dir=half_run, resume=True, progress=False, run_info=RUN_INFO)
    assert "TrainConfig.lr differs: the checkpoint has 0.003, this run has 0.001" in str(e.value)


@pytest.mark.parametrize(
    "field, value",
    [("books", ["pg35", "pg120"]), ("val_fraction", 0.1), ("preset", "course"), ("tokenizer_fingerprint", "def")],
)
def test_resume_refuses_other_run_info(half_run, field, value):
    other = {**RUN_INFO, field: value}
    with pytest.raises(CheckpointError) as e:
        pretrain(tiny_model(), TRAIN, VAL, cfg(), run_dir=half_run, resume=True, progress=False, run_info=other)
    assert f"{field} differs: the checkpoint has {RUN_INFO[field]!r}, this run has {value!r}" in str(e.value)


def test_resume_refuses_other_model_or_data(half_run):
    with pytest.raises(CheckpointError, match="model config dropout differs: the checkpoint has 0.0, this run has 0.1"):
        pretrain(tiny_model(dropout=0.1), TRAIN, VAL, cfg(), run_dir=half_run, resume=True, progress=False, run_info=RUN_INFO)
    other = TRAIN.copy()
    other[100] = (other[100] + 1) % VOCAB
    with pytest.raises(CheckpointError, match="training data sha256 differs"):
        pretrain(tiny_model(), other, VAL, cfg(), run_dir=half_run, resume=True, progress=False, run_info=RUN_INFO)
    with pytest.raises(CheckpointError, match="validation tokens differs: the checkpoint has 1000, this run has 999"):
        pretrain(tiny_model(), TRAIN, VAL[:-1], cfg(), run_dir=half_run, resume=True, progress=False, run_info=RUN_INFO)


def test_resume_allows_another_checkpoint_interval(half_run):
    hist = pretrain(tiny_model(), TRAIN, VAL, cfg(checkpoint_interval=3), run_dir=half_run, resume=True, progress=False, run_info=RUN_INFO)
    assert hist["step"] == list(range(1, 9))


def test_resume_ignores_what_only_changes_speed(half_run):
    """--compile and the attention implementation compute the same thing: a run may resume with either changed."""
    hist = pretrain(tiny_model(attn_impl="explicit"), TRAIN, VAL, cfg(), run_dir=half_run, resume=True, progress=False,
                    run_info=RUN_INFO)
    assert hist["step"] == list(range(1, 9))
    check_resume(read_training_state(half_run), cfg=cfg(compile=True), model_config=tiny_config(attn_impl="sdpa"))


def test_compile_without_a_compiler_is_a_clear_error_before_training(monkeypatch):
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match=r"needs a C\+\+ compiler"):
        pretrain(model, TRAIN, VAL, cfg(compile=True), progress=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_resume_refuses_missing_or_old_layout_run(tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume in .*empty"):
        pretrain(tiny_model(), TRAIN, VAL, cfg(), run_dir=tmp_path / "empty", resume=True, progress=False)
    with pytest.raises(CheckpointError, match="nothing to resume: no run folder"):
        pretrain(tiny_model(), TRAIN, VAL, cfg(), resume=True, progress=False)
    old = tmp_path / "old"
    old.mkdir()
    (old / "state.json").write_text('{"step": 2}')
    with pytest.raises(CheckpointError, match="old layout"):
        read_training_state(old)


def test_pretrain_refuses_to_overwrite_a_run(half_run):
    before = (half_run / "checkpoint" / "state.json").read_bytes()
    with pytest.raises(OutputExistsError, match="already holds a training checkpoint"):
        pretrain(tiny_model(), TRAIN, VAL, cfg(), run_dir=half_run, progress=False)
    assert (half_run / "checkpoint" / "state.json").read_bytes() == before
    hist = pretrain(tiny_model(), TRAIN, VAL, cfg(max_steps=2, warmup_steps=1), run_dir=half_run, progress=False, overwrite=True)
    assert hist["step"] == [1, 2] and read_training_state(half_run)["step"] == 2


def _tamper_state(run, **changes):
    path = run / "checkpoint" / "state.json"
    state = json.loads(path.read_text())
    state.update(changes)
    path.write_text(json.dumps(state))


@pytest.mark.parametrize(
    "damage, phrase",
    [
        (lambda run: (run / "checkpoint" / "state.json").write_text('{"format": "gpt-course-checkpoint/2", "step": 4, "hist'),
         "state.json is not valid JSON"),
        (lambda run: (run / "checkpoint" / "state.json").write_text("[]"), "expected a JSON object"),
        (lambda run: (run / "checkpoint" / "state.json").unlink(), "incomplete: .*state.json is missing"),
        (lambda run: (run / "checkpoint" / "optimizer.safetensors").unlink(), "incomplete: .*optimizer.safetensors is missing"),
        (lambda run: _tamper_state(run, step="four"), "the field 'step' is 'four', not a whole number: the checkpoint is damaged"),
        (lambda run: _tamper_state(run, step=4 + 8), "step 12 is beyond the run's 8 steps; the checkpoint is damaged"),
        (lambda run: _tamper_state(run, step=5), "its history records 4 steps, but step is 5"),
        (lambda run: _tamper_state(run, seconds=float("nan")), "seconds nan is not a finite number >= 0"),
        (lambda run: _tamper_state(run, history={"step": "1234"}), "its history holds a value that is not a list"),
        (lambda run: _tamper_state(run, format="something/1"), "has format 'something/1'"),
        (lambda run: _tamper_state(run, files={}), "records no sha256 for model.safetensors"),
    ],
)
def test_damaged_training_checkpoint_is_refused(half_run, damage, phrase):
    damage(half_run)
    with pytest.raises(CheckpointError, match=phrase):
        pretrain(tiny_model(), TRAIN, VAL, cfg(), run_dir=half_run, resume=True, progress=False, run_info=RUN_INFO)


def test_files_of_different_steps_are_never_mixed(tmp_path):
    """The bug this layout fixes: step-6 weights next to step-4 optimizer state resumed silently."""
    a, b = tmp_path / "a", tmp_path / "b"
    pretrain(tiny_model(), TRAIN, VAL, cfg(stop_after=4), run_dir=a, progress=False)
    pretrain(tiny_model(), TRAIN, VAL, cfg(stop_after=6), run_dir=b, progress=False)
    (a / "checkpoint" / "model.safetensors").write_bytes((b / "checkpoint" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"model.safetensors has sha256 \w+, but .*state.json records \w+: the files"):
        pretrain(tiny_model(), TRAIN, VAL, cfg(), run_dir=a, resume=True, progress=False)


def test_non_finite_optimizer_state_is_refused(half_run):
    from safetensors.torch import load_file

    import hashlib

    opt_path = half_run / "checkpoint" / "optimizer.safetensors"
    opt = load_file(str(opt_path))
    key = next(k for k in opt if k.endswith("::exp_avg_sq"))
    opt[key].view(-1)[0] = float("inf")
    save_file(opt, str(opt_path))
    state = read_training_state(half_run)
    _tamper_state(half_run, files={**state["files"], "optimizer.safetensors": hashlib.sha256(opt_path.read_bytes()).hexdigest()})
    model = tiny_model()
    with pytest.raises(CheckpointError, match=rf"tensor '{key}' holds 1 NaN or infinite"):
        load_training_state(half_run, model, make_optimizer(model, 1e-3, 0.1))


def test_non_finite_weights_in_training_checkpoint_are_refused(half_run):
    import hashlib

    path = half_run / "checkpoint" / "model.safetensors"
    config, state, meta = read_checkpoint(path)
    state["ln_f.weight"][0] = float("nan")
    save_file(state, str(path), metadata={"gpt_config": json.dumps(config.to_dict())})
    files = read_training_state(half_run)["files"]
    _tamper_state(half_run, files={**files, "model.safetensors": hashlib.sha256(path.read_bytes()).hexdigest()})
    with pytest.raises(CheckpointError, match="tensor 'ln_f.weight' holds 1 NaN"):
        pretrain(tiny_model(), TRAIN, VAL, cfg(), run_dir=half_run, resume=True, progress=False, run_info=RUN_INFO)


def test_crash_between_checkpoint_writes_keeps_the_previous_one(tmp_path, monkeypatch):
    """Fault injection: the write of step 6's optimizer file fails after its model file was written.
    The step-3 checkpoint stays whole, and resuming from it ends exactly where an uninterrupted run does."""
    c = cfg(max_steps=8, checkpoint_interval=3, eval_interval=3)
    full = tiny_model(dropout=0.1)
    full_hist = pretrain(full, TRAIN, VAL, c, progress=False)

    run = tmp_path / "run"
    real_write = checkpoint_module.write_file
    calls = []

    def failing_write(path, data):
        calls.append(path.name)
        if len(calls) == 5:  # step 3 wrote files 1-3; step 6 writes model (4), then fails on the optimizer (5)
            raise RuntimeError("simulated crash: power lost while writing the checkpoint")
        real_write(path, data)

    monkeypatch.setattr(checkpoint_module, "write_file", failing_write)
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain(tiny_model(dropout=0.1), TRAIN, VAL, c, run_dir=run, progress=False)
    assert calls == ["model.safetensors", "optimizer.safetensors", "state.json", "model.safetensors", "optimizer.safetensors"]
    monkeypatch.setattr(checkpoint_module, "write_file", real_write)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint"]  # the half-written folder is gone
    assert read_training_state(run)["step"] == 3

    resumed = tiny_model(seed=42, dropout=0.1)
    hist = pretrain(resumed, TRAIN, VAL, c, run_dir=run, resume=True, progress=False)
    assert hist["train_loss"] == full_hist["train_loss"] and hist["val_loss"] == full_hist["val_loss"]
    assert _runs_equal(resumed, full)
    final = load_model(run / "checkpoint" / "model.safetensors")
    assert _runs_equal(final, full)


# --- Ctrl-C ------------------------------------------------------------------------------------


def _interrupt_after(monkeypatch, n_losses: int, times: int = 1):
    """Send SIGINT to this process from inside the n-th training step (as Ctrl-C would)."""
    real = train_module.lm_loss
    count = [0]

    def lm_loss(model, x, y):
        count[0] += 1
        if count[0] == n_losses:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return real(model, x, y)

    monkeypatch.setattr(train_module, "lm_loss", lm_loss)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_ctrl_c_saves_the_last_step_and_resumes_exactly(tmp_path, monkeypatch, capsys):
    c = cfg(max_steps=8, eval_interval=4)
    full = tiny_model(dropout=0.1)
    full_hist = pretrain(full, TRAIN, VAL, c, progress=False)
    handler = signal.getsignal(signal.SIGINT)
    run = tmp_path / "run"
    _interrupt_after(monkeypatch, 3)  # during step 3: the step finishes, then training stops
    with pytest.raises(TrainingInterrupted) as e:
        pretrain(tiny_model(dropout=0.1), TRAIN, VAL, c, run_dir=run, progress=False)
    assert isinstance(e.value, KeyboardInterrupt)
    assert e.value.step == 3 and e.value.checkpoint == run / "checkpoint"
    assert e.value.history["step"] == [1, 2, 3]
    assert read_training_state(run)["step"] == 3
    assert "finishing this step, then saving a checkpoint" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is handler  # the handler is restored
    monkeypatch.undo()
    resumed = tiny_model(seed=1, dropout=0.1)
    hist = pretrain(resumed, TRAIN, VAL, c, run_dir=run, resume=True, progress=False)
    assert hist["train_loss"] == full_hist["train_loss"] and _runs_equal(resumed, full)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_ctrl_c_without_run_folder_and_twice(tmp_path, monkeypatch):
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(TrainingInterrupted) as e:
        pretrain(tiny_model(), TRAIN, VAL, cfg(), progress=False)
    assert e.value.step == 2 and e.value.checkpoint is None
    # a second Ctrl-C stops at once, without saving; the last periodic checkpoint stays as it was
    monkeypatch.undo()
    run = tmp_path / "run"
    _interrupt_after(monkeypatch, 5, times=2)
    with pytest.raises(KeyboardInterrupt) as e:
        pretrain(tiny_model(), TRAIN, VAL, cfg(checkpoint_interval=2, eval_interval=8), run_dir=run, progress=False)
    assert not isinstance(e.value, TrainingInterrupted)
    assert read_training_state(run)["step"] == 4


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_ctrl_c_during_the_last_step_still_stops(tmp_path, monkeypatch):
    _interrupt_after(monkeypatch, 8)
    with pytest.raises(TrainingInterrupted) as e:
        pretrain(tiny_model(), TRAIN, VAL, cfg(eval_interval=8), run_dir=tmp_path / "run", progress=False)
    assert e.value.step == 8 and read_training_state(tmp_path / "run")["step"] == 8


# --- bad inputs to the loop ---------------------------------------------------------------------


def test_too_short_stream_raises():
    with pytest.raises(ConfigError, match="validation token stream has 20 tokens"):
        pretrain(tiny_model(), TRAIN, VAL[:20], cfg(), progress=False)


def test_token_ids_outside_the_vocabulary_are_refused():
    bad = TRAIN.copy()
    bad[10] = VOCAB
    with pytest.raises(ConfigError, match=f"training token stream holds token id {VOCAB}, but the model's vocabulary has {VOCAB}"):
        pretrain(tiny_model(), bad, VAL, cfg(), progress=False)


@pytest.mark.parametrize("n_batches", [0, -1])
def test_evaluate_needs_batches(n_batches):
    ids = torch.from_numpy(VAL.astype(np.int64))
    with pytest.raises(ConfigError, match=r"n_batches \(evaluate takes the mean over them\) must be a whole number >= 1"):
        evaluate(tiny_model(), ids, 4, n_batches, torch.device("cpu"))


def test_check_resume_compares_only_what_is_given(half_run):
    state = read_training_state(half_run)
    check_resume(state)  # nothing to compare
    check_resume(state, cfg=cfg(), model_config=tiny_config(), run_info=RUN_INFO)
    with pytest.raises(CheckpointError, match="TrainConfig.max_steps differs: the checkpoint has 8, this run has 9"):
        check_resume(state, cfg=cfg(max_steps=9))


def test_compiled_training_follows_the_eager_run():
    """TrainConfig(compile=True): the same losses as the eager loop (to float rounding), compile time recorded."""
    eager = pretrain(tiny_model(), TRAIN, VAL, cfg(max_steps=4, eval_interval=4), progress=False)
    compiled = pretrain(tiny_model(), TRAIN, VAL, cfg(max_steps=4, eval_interval=4, compile=True), progress=False)
    np.testing.assert_allclose(compiled["train_loss"], eager["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(compiled["val_loss"], eager["val_loss"], rtol=1e-4)
    assert compiled["compile_seconds"] > 0 and "compile_seconds" not in eager
