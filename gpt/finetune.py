"""Fine-tuning a classifier: one config, one loop in named steps, checkpoints that resume exactly.

The loop, top to bottom (:func:`finetune`):

1. :func:`setup` -- check the config and the splits, encode the messages, build AdamW over the
   trainable parameters only, and the learning-rate schedule (linear warmup, linear decay to 0).
2. :func:`finetune_step` -- one batch: forward (bf16 autocast where fast), cross-entropy, backward,
   gradient clipping, optimizer step.
3. :func:`end_epoch` -- validation accuracy and loss; the best epoch's weights are kept.
4. :func:`save_checkpoint` / :func:`load_checkpoint` -- a checkpoint folder written in one step
   (trainable weights, optimizer state, random-number states, the position in the epoch), so that
   a run stopped by Ctrl-C resumes to exactly the weights of an uninterrupted run (the folder's
   contents and checks are :mod:`gpt.io.finetune_checkpoint`).
5. :func:`finish` -- back to the best epoch's weights, final evaluation, the :class:`FinetuneResult`.

What trains is chosen before the loop: :func:`build_model` reads a :class:`FinetuneConfig` and
calls :func:`gpt.classifier.set_trainable` (``full``, ``last-block``, ``head``) or
:func:`gpt.lora.apply_lora` (``lora``). The bag-of-words ``baseline`` strategy is
:func:`gpt.experiments.baseline.train_baseline`; it takes the same config and returns the same result type.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .classifier import (GPTClassifier, classifier_from_checkpoint, classifier_from_pretrained, encode_messages, pad_batch, predict_ids,
                         set_trainable, tokenizer_for)
from .errors import ConfigError
from .finetune_config import (ALL_STRATEGIES, CLASS_WEIGHTS,  # noqa: F401  (part of this module's API: the config and its defaults)
                              DEFAULT_CONFIGS, LORA_VARIANT_FIELDS, ONLY_FOR, FinetuneConfig, default_config)
from .io.checkpoint import InterruptFlag, TrainingInterrupted
from .io.finetune_checkpoint import load_checkpoint, save_checkpoint
from .lora.layer import apply_lora, check_lora_rank  # noqa: F401  (check_lora_rank: part of this module's API, used by the CLI)
from .lora.variants import lora_plus_param_groups
from .metrics import metrics_from_probs
from .model import count_parameters
from .runtime.device import autocast, pick_device, resolve_precision
from .runtime.meters import PeakMemory, SavedActivations, optimizer_state_bytes
from .runtime.progress import progress_bar
from .sms import SPLIT_NAMES, label_ids
from .train import make_optimizer


# ---------------------------------------------------------------------------------------------
# The result


@dataclass
class FinetuneResult:
    """What :func:`finetune` (and :func:`gpt.experiments.baseline.train_baseline`) return.

    * ``history``: per epoch ``epoch``, ``train_loss`` and ``train_accuracy`` (running means over the
      epoch's batches, dropout on), ``val_loss``, ``val_accuracy`` (eval mode), ``lr`` (at the epoch's
      end) and ``seconds`` (cumulative training time).
    * ``best_epoch`` (1-based; best validation accuracy, ties broken by lower validation loss).
    * ``metrics``: ``{split: metrics}`` for ``"val"`` and each evaluated split (see
      :func:`gpt.metrics.metrics_from_probs`: accuracy, precision, recall, f1, confusion, loss,
      spam_probability, predicted).
    * ``wall_seconds`` (the whole call), ``train_seconds`` (the epochs, validation included),
      ``seconds_per_epoch``, ``seconds_per_step`` (one optimizer step: forward, backward, clipping, update).
    * ``peak_memory_bytes`` / ``peak_memory_method`` (:class:`gpt.runtime.meters.PeakMemory`, around the
      epochs), ``optimizer_state_bytes``, ``gradient_bytes`` (of the trainable parameters),
      ``activation_bytes`` (largest saved activations of one training batch).
    * ``truncated_messages``: ``{split: messages cut to the context}``.
    * ``resumed``: the run continued from a checkpoint (times and memory then cover the parts).
    * ``model``: the fitted model for the baseline (``None`` for a GPT: the caller holds it).
    """

    config: FinetuneConfig
    history: dict
    best_epoch: int
    metrics: dict
    trainable_params: int
    total_params: int
    wall_seconds: float
    train_seconds: float
    seconds_per_epoch: float
    seconds_per_step: float | None
    peak_memory_bytes: int | None
    peak_memory_method: str
    optimizer_state_bytes: int
    gradient_bytes: int
    activation_bytes: int
    truncated_messages: dict
    device: str
    precision: str
    resumed: bool = False
    model: nn.Module | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-serialisable (the model left out)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        d["config"] = self.config.to_dict()
        return d


# ---------------------------------------------------------------------------------------------
# Building the model a config describes


def build_model(config: FinetuneConfig, checkpoint: str | os.PathLike | None = None, tokenizer=None,
                base: str | os.PathLike | None = None) -> GPTClassifier:
    """The classifier ``config`` describes, ready to train: built from ``checkpoint`` (default: the
    reference model) with the config's dropouts, its head initialised from ``config.seed``, and its
    trainable parameters chosen by ``config.strategy`` (LoRA factors initialised from the seed too).
    ``base`` instead: GPT-2's weights from Hugging Face (``"gpt2"``, ..., or a local folder; see
    :func:`gpt.classifier.classifier_from_pretrained`), with GPT-2's tokenizer."""
    if config.strategy == "baseline":
        raise ConfigError("the baseline is not a GPT: use gpt.experiments.baseline.train_baseline(splits, config)")
    if base is not None and checkpoint is not None:
        raise ConfigError("give either a course checkpoint (--checkpoint) or a Hugging Face base (--base), not both")
    if base is not None:
        model = classifier_from_pretrained(base, dropout=config.dropout, classifier_dropout=config.classifier_dropout, seed=config.seed,
                                           attn_impl=config.attn_impl)
    else:
        model = classifier_from_checkpoint(
            checkpoint, dropout=config.dropout, classifier_dropout=config.classifier_dropout, seed=config.seed, tokenizer=tokenizer,
            attn_impl=config.attn_impl,
        )
    if config.strategy == "lora":
        check_lora_rank(config.r, min((min(m.in_features, m.out_features) for m in model.gpt.blocks.modules() if isinstance(m, nn.Linear)),
                                      default=None))
        with torch.random.fork_rng(devices=[]):  # the LoRA init depends on the seed, not on what ran before
            torch.manual_seed(config.seed)
            apply_lora(model, r=config.r, lora_alpha=config.lora_alpha, train_head=True,
                       target_modules=list(config.target_modules) if config.target_modules is not None else None,
                       use_rslora=config.use_rslora, use_dora=config.use_dora, init_lora_weights=config.init_lora_weights)
    else:
        set_trainable(model, config.strategy)
    return model


# ---------------------------------------------------------------------------------------------
# 1. Setup


@dataclass
class Run:
    """The state of one fine-tuning run, carried from step to step (and into checkpoints)."""

    model: nn.Module
    config: FinetuneConfig
    device: torch.device
    precision: str
    pad_id: int
    data: dict  # split name -> (token ids per message, class ids)
    truncated: dict
    params: list  # the trainable parameters, in optimizer order
    optimizer: torch.optim.Optimizer
    total_steps: int
    warmup_steps: int
    batch_generator: torch.Generator
    meter: SavedActivations
    history: dict = field(default_factory=lambda: {k: [] for k in HISTORY_KEYS})
    best: tuple | None = None  # ((val_accuracy, -val_loss), epoch, trainable weights)
    step: int = 0  # optimizer steps done
    epoch: int = 0  # epochs completed
    epoch_batches: list | None = None  # the current epoch's batches (lists of message indices)
    batch_in_epoch: int = 0  # batches of the current epoch done
    loss_sum: float = 0.0  # running sums over the current epoch
    correct: int = 0
    seen: int = 0
    step_seconds: float = 0.0
    train_seconds: float = 0.0  # of earlier parts of a resumed run
    resumed: bool = False
    class_weights: torch.Tensor | None = None  # per-class loss weights (config.class_weight)


HISTORY_KEYS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def check_splits(splits, config: FinetuneConfig) -> list[str]:
    """The names of the splits a run uses (train, val, then the evaluated ones), after checking them."""
    if not isinstance(splits, dict) or config.train_split not in splits or "val" not in splits:
        raise ConfigError(f"splits must be a dict holding at least {config.train_split!r} and 'val' DataFrames "
                          f"(the config's train_split names {config.train_split!r} as the split to train on)")
    for name in config.eval_splits:
        if name not in splits and name not in SPLIT_NAMES:
            raise ConfigError(f"eval_splits names {name!r}, which is neither in the splits ({sorted(splits)}) nor a known split")
    names = [config.train_split, "val"] + [s for s in config.eval_splits if s in splits and s not in (config.train_split, "val")]
    for name in names:
        df = splits[name]
        missing = {"label", "text"} - set(getattr(df, "columns", ()))
        if missing:
            raise ConfigError(f"split {name!r} must be a DataFrame with columns 'label' and 'text'; missing {sorted(missing)}")
        if len(df) == 0:
            raise ConfigError(f"split {name!r} is empty")
    present = set(splits[config.train_split]["label"])
    if not set(config.labels) <= present:
        raise ConfigError(
            f"the train split must hold both classes of labels={list(config.labels)}; it has {sorted(present, key=str)} "
            "(set the config's labels to the split's class names; a model trained on one class learns nothing)"
        )
    return names


def _optimizer(model, config: FinetuneConfig) -> torch.optim.AdamW:
    """AdamW as pretraining builds it: PyTorch's fused implementation, one kernel for all parameters
    (the for-loop one runs a dozen small operations per tensor). With ``loraplus_lr_ratio``: LoRA+'s
    groups (:func:`gpt.lora.variants.lora_plus_param_groups`), B faster."""
    if config.strategy == "lora" and config.loraplus_lr_ratio is not None:
        groups = lora_plus_param_groups(model, config.lr, config.loraplus_lr_ratio, config.weight_decay)
        fused = all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])  # as make_optimizer decides
        return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95), fused=fused)  # make_optimizer's betas
    return make_optimizer(model, config.lr, config.weight_decay)


def setup(model: nn.Module, splits: dict, config: FinetuneConfig, tokenizer=None) -> Run:
    """Check everything, encode the splits, and build the optimizer: a :class:`Run` at step 0."""
    if getattr(model, "num_classes", None) != 2:
        raise ConfigError(f"finetune() trains binary classifiers; this model has {getattr(model, 'num_classes', None)} classes")
    names = check_splits(splits, config)
    device = pick_device(config.device)  # an unknown or unavailable device is a ConfigError
    precision = resolve_precision(config.precision, device)
    tokenizer = tokenizer_for(model, tokenizer)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameter: call set_trainable() or apply_lora() first")
    model.to(device)
    data, truncated = {}, {}
    for name in names:  # the training split is "train" from here on, whichever config.train_split names
        key = "train" if name == config.train_split else name
        ids, truncated[key] = encode_messages(splits[name]["text"].tolist(), tokenizer, model.config.context_length)
        data[key] = (ids, label_ids(splits[name]["label"], config.labels))
    n_batches = math.ceil(len(data["train"][0]) / config.batch_size)
    total = config.epochs * n_batches
    torch.manual_seed(config.seed)  # dropout masks
    return Run(
        model=model, config=config, device=device, precision=precision, pad_id=tokenizer.eot_token, data=data,
        truncated=truncated, params=params, optimizer=_optimizer(model, config),
        total_steps=total, warmup_steps=int(config.warmup_fraction * total),
        batch_generator=torch.Generator().manual_seed(config.seed), meter=SavedActivations(model),
        class_weights=class_weights(data["train"][1], config.class_weight, device),
    )


def class_weights(y: np.ndarray, scheme: str | None, device=None) -> torch.Tensor | None:
    """The loss weight of each class: ``None`` (unweighted), or for ``"balanced"`` ``n / (2 · n_c)``
    over the training labels ``y`` (class ids), so both classes count as much in the loss."""
    if scheme is None:
        return None
    counts = np.bincount(np.asarray(y), minlength=2).astype(np.float64)
    return torch.tensor(len(y) / (2 * counts), dtype=torch.float32, device=device)


def finetune_lr(run: Run, step: int) -> float:
    """Linear warmup over ``warmup_steps``, then linear decay to 0 at the last step."""
    lr, warmup, total = run.config.lr, run.warmup_steps, run.total_steps
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * max(0.0, (total - step) / max(1, total - warmup))


def bucketed_batches(lengths, batch_size: int, bucket: int, generator: torch.Generator) -> list[list[int]]:
    """One epoch's batches of message indices: shuffled; chunks of ``bucket * batch_size`` messages
    sorted by length (less padding), and the batches shuffled again."""
    lengths = np.asarray(lengths)
    perm = torch.randperm(len(lengths), generator=generator).numpy()
    if bucket > 1:
        chunks = [perm[i : i + bucket * batch_size] for i in range(0, len(perm), bucket * batch_size)]
        perm = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in chunks])
    batches = [perm[i : i + batch_size].tolist() for i in range(0, len(perm), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def epoch_batches(run: Run) -> list[list[int]]:
    """The next epoch's batches (:func:`bucketed_batches` from the run's batch-order generator)."""
    lengths = [len(s) for s in run.data["train"][0]]
    return bucketed_batches(lengths, run.config.batch_size, run.config.bucket, run.batch_generator)


# ---------------------------------------------------------------------------------------------
# 2. One step, 3. the end of an epoch


def finetune_step(run: Run, batch: list[int]) -> None:
    """Forward, loss, backward, clipping and update on one batch of message indices."""

    t0 = time.perf_counter()
    for g in run.optimizer.param_groups:
        g["lr"] = finetune_lr(run, run.step) * g.get("lr_scale", 1.0)  # lr_scale: LoRA+'s ratio for B
    ids, y_all = run.data["train"]
    x, lengths = pad_batch([ids[i] for i in batch], run.pad_id, pad_to_multiple_of=run.config.pad_to_multiple_of,
                           max_length=run.model.config.context_length)
    y = torch.from_numpy(y_all[batch]).to(run.device)
    with run.meter.track_if_larger(x), autocast(run.device, run.precision):  # saved activations: only a new largest batch is measured
        logits = run.model(x.to(run.device), lengths.to(run.device))
    loss = F.cross_entropy(logits.float(), y, weight=run.class_weights)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if run.config.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.params, run.config.grad_clip)
    run.optimizer.step()
    run.step_seconds += time.perf_counter() - t0
    run.step += 1
    run.batch_in_epoch += 1
    run.loss_sum += loss.item() * len(batch)
    run.correct += int((logits.argmax(-1) == y).sum())
    run.seen += len(batch)


def _trainable_state(model: nn.Module) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def evaluate_split(run: Run, name: str) -> dict:
    ids, y = run.data[name]
    probs = predict_ids(run.model, ids, run.pad_id, device=run.device, pad_to_multiple_of=run.config.pad_to_multiple_of)
    return metrics_from_probs(y, probs, run.config.labels)


def end_epoch(run: Run, seconds: float) -> dict:
    """Validation metrics, one history row, and the best epoch's weights kept; starts the next epoch."""
    val = evaluate_split(run, "val")
    run.epoch += 1
    h = run.history
    h["epoch"].append(run.epoch)
    h["train_loss"].append(run.loss_sum / run.seen)
    h["train_accuracy"].append(run.correct / run.seen)
    h["val_loss"].append(val["loss"])
    h["val_accuracy"].append(val["accuracy"])
    h["lr"].append(finetune_lr(run, run.step - 1))
    h["seconds"].append(seconds)
    key = (val["accuracy"], -val["loss"])
    if run.best is None or key > run.best[0]:
        run.best = (key, run.epoch, _trainable_state(run.model))
    run.epoch_batches, run.batch_in_epoch, run.loss_sum, run.correct, run.seen = None, 0, 0.0, 0, 0
    return val


# ---------------------------------------------------------------------------------------------
# 5. The end, and the whole loop


def finish(run: Run, wall_start: float, peak: PeakMemory) -> FinetuneResult:
    """Restore the best epoch's weights, evaluate every split but train, and build the result."""
    with torch.no_grad():
        named = dict(run.model.named_parameters())
        for n, w in run.best[2].items():
            named[n].copy_(w)
    run.model.eval()
    metrics = {name: evaluate_split(run, name) for name in run.data if name != "train"}
    c = run.config
    return FinetuneResult(
        config=c, history=run.history, best_epoch=run.best[1], metrics=metrics,
        trainable_params=count_parameters(run.model, trainable_only=True), total_params=count_parameters(run.model),
        wall_seconds=time.perf_counter() - wall_start, train_seconds=run.train_seconds,
        seconds_per_epoch=run.train_seconds / c.epochs, seconds_per_step=run.step_seconds / max(1, run.step),
        peak_memory_bytes=peak.peak_bytes, peak_memory_method=peak.method,
        optimizer_state_bytes=optimizer_state_bytes(run.optimizer),
        gradient_bytes=int(sum(p.numel() * p.element_size() for p in run.params)),
        activation_bytes=int(run.meter.peak_bytes), truncated_messages=run.truncated,
        device=str(run.device), precision=run.precision, resumed=run.resumed,
    )


def finetune(
    model: nn.Module,
    splits: dict,
    config: FinetuneConfig | None = None,
    *,
    tokenizer=None,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> FinetuneResult:
    """Train ``model`` on ``splits["train"]`` and keep the epoch with the best validation accuracy.

    Only the parameters with ``requires_grad`` train: choose them first (:func:`build_model`, or
    :func:`gpt.classifier.set_trainable` / :func:`gpt.lora.apply_lora`). ``config`` (default: the
    ``full`` strategy's defaults) sets the hyperparameters, the seed (batch order, dropout masks),
    the training precision (evaluation always runs in fp32) and the class names (``labels``,
    ``("ham", "spam")`` by default; the second is the positive class of precision / recall / F1).
    ``splits`` maps names to DataFrames with ``label`` and ``text``: ``"train"`` and ``"val"`` are
    required; each name of ``config.eval_splits`` that ``splits`` holds is evaluated at the end
    with the best epoch's weights.

    With ``checkpoint_dir``, the run's state is saved there after every epoch and when Ctrl-C stops
    it (at the end of the current step; a :class:`TrainingInterrupted` is raised after saving), and
    ``resume=True`` continues from it to exactly the weights of an uninterrupted run.

    The model is left on the config's device, in eval mode, with the best epoch's weights.
    """
    wall_start = time.perf_counter()
    config = config or DEFAULT_CONFIGS["full"]
    if config.strategy == "baseline":
        raise ConfigError("the baseline is not a GPT: use gpt.experiments.baseline.train_baseline(splits, config)")
    if resume and checkpoint_dir is None:
        raise ConfigError("resume=True needs the checkpoint_dir to resume from")
    run = setup(model, splits, config, tokenizer)
    if resume:
        load_checkpoint(run, checkpoint_dir)
    bar = None
    if progress:
        bar = progress_bar(total=run.total_steps, initial=run.step, desc="fine-tuning", unit="batch")
    t0 = time.perf_counter() - run.train_seconds
    with PeakMemory(run.device) as peak, InterruptFlag() as interrupt:
        try:
            while run.epoch < config.epochs:
                run.model.train()
                if run.epoch_batches is None:
                    run.epoch_batches = epoch_batches(run)
                for batch in run.epoch_batches[run.batch_in_epoch :]:
                    finetune_step(run, batch)
                    run.train_seconds = time.perf_counter() - t0
                    if bar:
                        bar.update(1)
                        bar.set_postfix(epoch=run.epoch + 1, loss=f"{run.loss_sum / run.seen:.3f}", acc=f"{run.correct / run.seen:.3f}")
                    if interrupt.requested:
                        raise KeyboardInterrupt
                val = end_epoch(run, time.perf_counter() - t0)
                run.train_seconds = time.perf_counter() - t0
                if bar:
                    bar.set_postfix(epoch=run.epoch, val_acc=f"{val['accuracy']:.3f}")
                if checkpoint_dir is not None:
                    save_checkpoint(run, checkpoint_dir)
                if interrupt.requested:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            if bar:
                bar.close()
            saved = None
            if checkpoint_dir is not None and not interrupt.forced:
                saved = save_checkpoint(run, checkpoint_dir)
            raise TrainingInterrupted(run.step, saved, run.history) from None
    if bar:
        bar.close()
    return finish(run, wall_start, peak)
