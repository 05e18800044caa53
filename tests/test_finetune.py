"""The fine-tuning loop: config checks, invariants, reproducibility, checkpoints that resume exactly."""

import dataclasses
import json
import os
import signal

import numpy as np
import pytest
import torch

from gpt import finetune as FT
from gpt.classifier import set_trainable
from gpt.errors import CheckpointError, ConfigError
from gpt.io.checkpoint import STATE_FILE
from gpt.io.finetune_checkpoint import CHECKPOINT_WEIGHTS
from gpt.lora import apply_lora
from gpt.model import count_parameters
from helpers_classify import tiny_classifier, toy_splits

QUICK = dict(epochs=2, lr=1e-2, batch_size=4, eval_splits=("test",))


def cfg(strategy="full", **kw):
    return FT.FinetuneConfig(strategy=strategy, **{**QUICK, **kw})


# --- the config -------------------------------------------------------------------------------


def test_default_configs_and_labels():
    assert FT.default_config("lora").label == "lora-r8" and FT.default_config("lora", r=2, lora_alpha=4).label == "lora-r2"
    assert FT.default_config("head").lr == 3e-2 and FT.default_config("baseline").l2 == 1e-3
    c = FT.default_config("full", epochs=2)
    assert c.epochs == 2 and FT.FinetuneConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        (dict(epochs=0), "epochs must be a whole number >= 1"),
        (dict(epochs=1.5), "epochs must be a whole number"),
        (dict(batch_size=0), "batch_size"),
        (dict(lr=0.0), "lr must be a finite number"),
        (dict(lr=float("nan")), "lr must be a finite number"),
        (dict(weight_decay=-1.0), "weight_decay"),
        (dict(warmup_fraction=1.0), "warmup_fraction"),
        (dict(dropout=1.0), "dropout"),
        (dict(grad_clip=0.0), "grad_clip"),
        (dict(seed=-1), "seed"),
        (dict(precision="fp16"), "precision"),
        (dict(strategy="prefix"), "unknown strategy"),
        (dict(strategy="lora"), "needs r"),
        (dict(strategy="lora", r=0, lora_alpha=16.0), "r must be a whole number >= 1"),
        (dict(strategy="lora", r=8, lora_alpha=-1.0), "lora_alpha"),
        (dict(r=8), "apply to strategy 'lora' only"),
        (dict(labels=("ham",)), "two different class names"),
        (dict(labels=("ham", "ham")), "two different class names"),
        (dict(name="my run"), r"name \(--label\) must be 1 to 64 letters, digits"),
        (dict(name="x_seed1"), "without '_seed'"),
        (dict(name="../up"), r"name \(--label\) must be"),
        (dict(train_split="all"), "train_split must be one of"),
        (dict(class_weight="inverse"), "class_weight must be one of"),
        (dict(fold=5), "fold must be below folds"),
        (dict(fold=-1), "fold must be a whole number >= 0"),
        (dict(folds=1), "folds must be a whole number >= 2"),
        (dict(pad_to_multiple_of=0), "pad_to_multiple_of must be a whole number >= 1"),
        (dict(attn_impl="flash"), r"attn_impl \(None: the checkpoint's\) must be one of"),
    ],
)
def test_bad_configs_are_refused(kwargs, phrase):
    with pytest.raises(ConfigError, match=phrase):
        FT.FinetuneConfig(**kwargs)


@pytest.mark.parametrize("strategy, field", [("full", "r"), ("lora", "l2"), ("baseline", "dropout"), ("head", "min_count"),
                                             ("baseline", "pad_to_multiple_of")])
def test_default_config_refuses_settings_that_do_not_apply(strategy, field):
    with pytest.raises(ConfigError, match="does not apply"):
        FT.default_config(strategy, **{field: 1})


# --- the loop ---------------------------------------------------------------------------------


def test_frozen_parameters_do_not_change_and_result_fields():
    model = tiny_classifier()
    set_trainable(model, "last-block")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    r = FT.finetune(model, toy_splits(), cfg("last-block"), progress=False)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) != p.requires_grad, n  # trainable ones moved, frozen ones did not
    assert r.trainable_params == count_parameters(model, trainable_only=True) < r.total_params
    assert len(r.history["val_accuracy"]) == 2 and 1 <= r.best_epoch <= 2
    assert set(r.metrics) == {"val", "test"}
    n_tensors = sum(1 for p in model.parameters() if p.requires_grad)
    # AdamW: exp_avg and exp_avg_sq (fp32) per trainable parameter, plus a 4-byte step counter per tensor
    assert r.optimizer_state_bytes == 2 * 4 * r.trainable_params + 4 * n_tensors
    assert r.activation_bytes > 0 and r.gradient_bytes == 4 * r.trainable_params
    assert r.peak_memory_method in ("rss_sampled", "cuda_max_allocated", "unavailable")
    assert not r.resumed and r.model is None
    json.dumps(r.to_dict())  # the result is plain data


def test_frozen_parameters_reach_neither_the_optimizer_nor_the_clipper(monkeypatch):
    model = tiny_classifier()
    apply_lora(model, r=2, lora_alpha=4, train_head=True)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    run = FT.setup(model, toy_splits(), cfg("lora", r=2, lora_alpha=4.0))
    in_optimizer = {id(p) for g in run.optimizer.param_groups for p in g["params"]}
    assert in_optimizer == trainable
    assert run.optimizer.defaults["fused"], "one fused AdamW kernel, not a loop over the parameters"
    clipped = []
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, c: clipped.append({id(p) for p in params}) or real(params, c))
    FT.finetune_step(run, [0, 1, 2, 3])
    assert clipped == [trainable]


def test_the_best_epoch_weights_are_restored():
    model = tiny_classifier()
    set_trainable(model, "head")
    r = FT.finetune(model, toy_splits(), cfg("head", epochs=3), progress=False)
    best = r.history["val_accuracy"][r.best_epoch - 1]
    assert best == max(r.history["val_accuracy"]) and r.metrics["val"]["accuracy"] == best


def test_finetune_is_reproducible_and_refuses_nothing_to_train():
    def run():
        model = tiny_classifier(dropout=0.1)
        set_trainable(model, "full")
        return FT.finetune(model, toy_splits(), cfg(epochs=1, seed=3), progress=False).history["train_loss"]

    assert run() == run()
    model = tiny_classifier()
    model.requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable"):
        FT.finetune(model, toy_splits(), cfg(epochs=1), progress=False)


def test_finetune_other_binary_labels():
    relabel = {"ham": "twain", "spam": "dickens"}
    splits = {k: v.assign(label=v["label"].map(relabel)) for k, v in toy_splits().items()}
    model = tiny_classifier()
    set_trainable(model, "full")
    r = FT.finetune(model, splits, cfg(labels=("twain", "dickens"), epochs=3), progress=False)
    test = r.metrics["test"]
    assert test["predicted"] == ["dickens" if p > 0.5 else "twain" for p in test["spam_probability"]]
    assert r.config.labels == ("twain", "dickens")
    with pytest.raises(ConfigError, match="labels must be one of|must hold both classes"):
        FT.finetune(model, splits, cfg(epochs=1), progress=False)  # ham/spam expected, twain/dickens given


@pytest.mark.parametrize(
    "change, phrase",
    [
        (lambda s: {k: v for k, v in s.items() if k != "val"}, "at least 'train' and 'val'"),
        (lambda s: {**s, "train": s["train"][s["train"]["label"] == "ham"]}, "both classes"),
        (lambda s: {**s, "val": s["val"].head(0)}, "is empty"),
        (lambda s: {**s, "train": s["train"].rename(columns={"text": "message"})}, "missing"),
        (lambda s: {**s, "val": s["val"].assign(text="")}, "empty message"),
    ],
)
def test_bad_splits_are_refused_before_training(change, phrase):
    model = tiny_classifier()
    set_trainable(model, "head")
    before = model.head.weight.detach().clone()
    with pytest.raises(ConfigError, match=phrase):
        FT.finetune(model, change(toy_splits()), cfg("head"), progress=False)
    assert torch.equal(model.head.weight, before)


def test_bad_calls():
    model = tiny_classifier()
    set_trainable(model, "head")
    with pytest.raises(ConfigError, match="eval_splits names 'tset'"):
        FT.finetune(model, toy_splits(), cfg("head", eval_splits=("tset",)), progress=False)
    with pytest.raises(ConfigError, match="needs the checkpoint_dir"):
        FT.finetune(model, toy_splits(), cfg("head"), progress=False, resume=True)
    with pytest.raises(ConfigError, match="no CUDA GPU|not available"):
        FT.finetune(model, toy_splits(), cfg("head", device="cuda:7"), progress=False)
    with pytest.raises(ConfigError, match="train_baseline"):
        FT.finetune(model, toy_splits(), FT.default_config("baseline"), progress=False)


# --- checkpoints and Ctrl-C ---------------------------------------------------------------------


def _lora_run(tmp_path, interrupt_after=None, monkeypatch=None, resume=False):
    config = cfg("lora", r=2, lora_alpha=4.0, epochs=3, dropout=0.1, classifier_dropout=0.1)
    model = tiny_classifier(dropout=0.1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        apply_lora(model, r=2, lora_alpha=4.0, train_head=True)
    if interrupt_after is not None:
        real, calls = FT.finetune_step, []

        def step_then_ctrl_c(run, batch):
            real(run, batch)
            calls.append(1)
            if len(calls) == interrupt_after:
                os.kill(os.getpid(), signal.SIGINT)  # the real signal: handled at the end of the step

        monkeypatch.setattr(FT, "finetune_step", step_then_ctrl_c)
    result = FT.finetune(model, toy_splits(), config, progress=False, checkpoint_dir=tmp_path / "ck", resume=resume)
    return model, result


def _trainable(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("interrupt_after", [4, 6, 13])  # mid-epoch, at an epoch's end, in the last epoch
def test_ctrl_c_saves_and_resume_is_exact(tmp_path, monkeypatch, interrupt_after):
    straight_model, straight = _lora_run(tmp_path / "a")
    with pytest.raises(FT.TrainingInterrupted, match=f"after step {interrupt_after}") as e:
        _lora_run(tmp_path / "b", interrupt_after, monkeypatch)
    assert e.value.checkpoint == tmp_path / "b" / "ck" and isinstance(e.value, KeyboardInterrupt)
    monkeypatch.undo()
    resumed_model, resumed = _lora_run(tmp_path / "b", resume=True)
    assert resumed.resumed
    a, b = _trainable(straight_model), _trainable(resumed_model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"
    assert resumed.history["train_loss"] == straight.history["train_loss"]
    assert resumed.metrics["test"]["spam_probability"] == straight.metrics["test"]["spam_probability"]


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = tiny_classifier()
    set_trainable(model, "head")
    config = cfg("head", epochs=2)
    FT.finetune(model, toy_splits(), dataclasses.replace(config, epochs=1), progress=False, checkpoint_dir=tmp_path / "ck")
    before = {f.name: f.read_bytes() for f in (tmp_path / "ck").iterdir()}

    import gpt.io.checkpoint

    real_write = gpt.io.checkpoint.write_file

    def crash_after_the_first_file(path, data):  # the tensors are written, then the disk is full
        if path.name == STATE_FILE:
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(gpt.io.checkpoint, "write_file", crash_after_the_first_file)
    model = tiny_classifier()
    set_trainable(model, "head")
    with pytest.raises(OSError, match="full|No space"):
        FT.finetune(model, toy_splits(), dataclasses.replace(config, epochs=1), progress=False, checkpoint_dir=tmp_path / "ck")
    assert {f.name: f.read_bytes() for f in (tmp_path / "ck").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck"], "no temporary folder is left behind"


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    def run(config, resume=False, model=None):
        model = model or tiny_classifier()
        if config.strategy == "head":
            set_trainable(model, "head")
        return FT.finetune(model, toy_splits(), config, progress=False, checkpoint_dir=tmp_path / "ck", resume=resume)

    run(cfg("head", epochs=1))
    with pytest.raises(CheckpointError, match="lr=0.01.*lr=0.02"):
        run(cfg("head", epochs=1, lr=2e-2), resume=True)
    with pytest.raises(CheckpointError, match="frozen"):
        run(cfg("head", epochs=1), resume=True, model=tiny_classifier(seed=5))
    state = tmp_path / "ck" / STATE_FILE
    state.write_text(state.read_text()[:100])
    with pytest.raises(CheckpointError, match="state.json is not valid JSON"):
        run(cfg("head", epochs=1), resume=True)


def test_resume_refuses_a_damaged_tensor_file(tmp_path):
    model = tiny_classifier()
    set_trainable(model, "head")
    FT.finetune(model, toy_splits(), cfg("head", epochs=1), progress=False, checkpoint_dir=tmp_path / "ck")
    weights = tmp_path / "ck" / CHECKPOINT_WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="do not belong together"):
        FT.finetune(model, toy_splits(), cfg("head", epochs=1), progress=False, checkpoint_dir=tmp_path / "ck", resume=True)
    with pytest.raises(CheckpointError, match="no complete fine-tuning checkpoint"):
        FT.finetune(model, toy_splits(), cfg("head", epochs=1), progress=False, checkpoint_dir=tmp_path / "none", resume=True)


# --- the training set and class weights --------------------------------------------------------


def test_class_weights_balance_the_classes():
    assert FT.class_weights(np.array([0, 0, 0, 1]), None) is None
    w = FT.class_weights(np.array([0, 0, 0, 1]), "balanced")
    assert torch.allclose(w, torch.tensor([4 / 6, 4 / 2]))  # n / (2 n_c): each class's weights sum to n / 2


def test_class_weight_changes_the_loss_and_train_split_picks_the_data():
    splits = toy_splits()
    skewed = splits["train"].iloc[[0, 1] + list(range(12, 24))].reset_index(drop=True)  # 2 spam, 12 ham
    plain = FT.finetune(tiny_classifier(), {**splits, "train_natural": skewed}, cfg(train_split="train_natural"), progress=False)
    weighted = FT.finetune(tiny_classifier(), {**splits, "train_natural": skewed}, cfg(train_split="train_natural", class_weight="balanced"),
                           progress=False)
    assert plain.history["train_loss"] != weighted.history["train_loss"]
    assert set(plain.truncated_messages) == {"train", "val", "test"}
    # trained on train_natural: the "train" split is not needed, and its absence is named when it is
    no_train = {k: v for k, v in splits.items() if k != "train"}
    FT.finetune(tiny_classifier(), {**no_train, "train_natural": skewed}, cfg(train_split="train_natural", epochs=1), progress=False)
    with pytest.raises(ConfigError, match="at least 'train_natural' and 'val'"):
        FT.finetune(tiny_classifier(), splits, cfg(train_split="train_natural"), progress=False)


@pytest.mark.parametrize(
    "change, phrase",
    [
        ({"epoch": "three"}, "the field 'epoch' is 'three', not a whole number: the checkpoint is damaged and cannot be resumed"),
        ({"epoch": 2 + 3}, "epoch 5 is outside the run's 0..2 epochs; the checkpoint does not belong to this run or is damaged"),
        ({"step": -1}, "step -1 is outside the run's"),
        ({"best_epoch": 7}, "best_epoch 7 is not one of the epochs done (1..2)"),
        ({"best_key": "x"}, "the field 'best_key' is 'x', not a list or null"),
        ({"loss_sum": None}, "the field 'loss_sum' is None, not a number"),
        ({"history": {"epoch": [1]}}, "its history records the epochs [1], but epoch is 2"),
    ],
)
def test_resume_type_checks_the_state(tmp_path, change, phrase):
    def run(resume=False):
        model = tiny_classifier()
        set_trainable(model, "head")
        return FT.finetune(model, toy_splits(), cfg("head", epochs=2), progress=False, checkpoint_dir=tmp_path / "ck", resume=resume)

    run()
    path = tmp_path / "ck" / STATE_FILE
    state = json.loads(path.read_text())
    assert state["epoch"] == 2
    state.update(change)
    path.write_text(json.dumps(state))
    with pytest.raises(CheckpointError) as e:
        run(resume=True)
    assert phrase in str(e.value)


def test_lora_rank_is_bounded_by_the_layers():
    config = cfg("lora", r=100_000, lora_alpha=16.0)
    with pytest.raises(ConfigError) as e:
        FT.build_model(config, checkpoint=None)
    width = FT.build_model(cfg("head")).gpt.config.n_embd
    assert f"r (the LoRA rank, --rank) 100000 is larger than the layers of the model allow: its adapted layers are {width} wide" in str(e.value)
    assert f"Choose r <= {width}" in str(e.value)
    assert FT.build_model(cfg("lora", r=width, lora_alpha=16.0)) is not None  # full rank: allowed
