"""The baseline every GPT result is compared with: bag-of-words logistic regression, in torch.

A message becomes a vector with one entry per word of the training vocabulary,
``x[w] = log(1 + count of w)``; the model is one ``nn.Linear(len(vocabulary), 2)``. Spam is full of
words that give it away ("free", "txt", "claim", "£"), so this tiny model is a strong baseline.
:func:`train_baseline` takes the same :class:`~gpt.finetune.FinetuneConfig` as
:func:`~gpt.finetune.finetune` (strategy ``"baseline"``) and returns the same
:class:`~gpt.finetune.FinetuneResult`, so the two fill the same results table.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import regex
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..classifier import as_text
from ..errors import ConfigError
from ..finetune import DEFAULT_CONFIGS, FinetuneConfig, FinetuneResult, check_splits, class_weights
from ..metrics import metrics_from_probs
from ..model import count_parameters
from ..runtime.meters import PeakMemory, optimizer_state_bytes
from ..runtime.progress import progress_bar
from ..sms import label_ids


WORD_PATTERN = r"[\p{L}\p{N}]+|[^\s\p{L}\p{N}]"  # runs of letters/digits, and single symbols (£, !, ...)


def words(text: str) -> list[str]:
    """The baseline's tokens: lowercased runs of letters/digits, and single other symbols."""
    return regex.findall(WORD_PATTERN, text.lower())


class BagOfWords(nn.Module):
    """Logistic regression on bag-of-words features: ``logits = W · x + b``, ``x[w] = log(1 + count of w)``.

    The vocabulary is the words of the training messages seen at least ``min_count`` times;
    other words are ignored. ``head`` is the ``nn.Linear(len(vocabulary), 2)``.
    """

    def __init__(self, vocabulary: list[str], num_classes: int = 2):
        super().__init__()
        if not vocabulary:
            raise ConfigError("the bag-of-words vocabulary is empty: no word of the training messages was kept (lower min_count)")
        self.vocabulary = list(vocabulary)
        self.index = {w: i for i, w in enumerate(self.vocabulary)}
        self.num_classes = num_classes
        self.head = nn.Linear(len(self.vocabulary), num_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_texts(cls, texts, min_count: int = 1) -> "BagOfWords":
        counts = Counter(w for t in texts for w in set(words(as_text(t))))
        return cls(sorted(w for w, c in counts.items() if c >= min_count))

    def features(self, texts) -> torch.Tensor:
        if isinstance(texts, (str, bytes)):
            raise ConfigError("features() expects a list of messages, got a single message; wrap it in a list")
        texts = list(texts)
        x = torch.zeros(len(texts), len(self.vocabulary))
        for i, t in enumerate(texts):
            for w in words(as_text(t)):
                j = self.index.get(w)
                if j is not None:
                    x[i, j] += 1
        return torch.log1p(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    @torch.no_grad()
    def predict_proba(self, texts) -> np.ndarray:
        return torch.softmax(self(self.features(texts)), dim=-1).double().numpy()


def train_baseline(splits: dict, config: FinetuneConfig | None = None, *, progress: bool = True) -> FinetuneResult:
    """Fit :class:`BagOfWords` on ``splits[config.train_split]`` (default ``"train"``); the result's
    ``model`` is the fitted model. ``config.class_weight="balanced"`` weights each class's loss by
    ``n / (2 · n_class)``.

    Cross-entropy + ``config.l2 * ||W||²`` (the bias is not penalised), AdamW without decoupled
    weight decay, constant learning rate, shuffled mini-batches; ``config.seed`` fixes the initial
    weights (normal, std 0.01) and the batch order. Keeps the epoch with the best validation accuracy
    (ties: lower validation loss). ``config.labels`` names the classes (default ham, spam).
    """
    t_start = time.perf_counter()
    config = config or DEFAULT_CONFIGS["baseline"]
    if config.strategy != "baseline":
        raise ConfigError(f"train_baseline needs a config with strategy 'baseline', got {config.strategy!r}")
    names = check_splits(splits, config)
    train = config.train_split  # "train" or "train_natural"
    model = BagOfWords.from_texts(splits[train]["text"].tolist(), config.min_count)
    torch.manual_seed(config.seed)
    nn.init.normal_(model.head.weight, std=0.01)
    gen = torch.Generator().manual_seed(config.seed)
    X = {n: model.features(splits[n]["text"].tolist()) for n in names}
    Y = {n: torch.from_numpy(label_ids(splits[n]["label"], config.labels)) for n in names}
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    history = {k: [] for k in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")}
    best = None
    epochs = range(1, config.epochs + 1)
    if progress:
        epochs = progress_bar(epochs, desc="bag-of-words", unit="epoch")
    n = len(Y[train])
    weight = class_weights(Y[train].numpy(), config.class_weight)
    steps, step_seconds = 0, 0.0
    t0 = time.perf_counter()
    with PeakMemory("cpu") as mem:
        for epoch in epochs:
            model.train()
            loss_sum, correct = 0.0, 0
            for b in torch.randperm(n, generator=gen).split(config.batch_size):
                t_step = time.perf_counter()
                logits = model(X[train][b])
                loss = F.cross_entropy(logits, Y[train][b], weight=weight)
                optimizer.zero_grad(set_to_none=True)
                (loss + config.l2 * model.head.weight.pow(2).sum()).backward()
                optimizer.step()
                step_seconds += time.perf_counter() - t_step
                steps += 1
                loss_sum += loss.item() * len(b)
                correct += int((logits.argmax(-1) == Y[train][b]).sum())
            with torch.no_grad():
                val_logits = model(X["val"])
                val_loss = F.cross_entropy(val_logits, Y["val"]).item()
                val_acc = float((val_logits.argmax(-1) == Y["val"]).float().mean())
            for k, v in zip(history, (epoch, loss_sum / n, correct / n, val_loss, val_acc, config.lr, time.perf_counter() - t0)):
                history[k].append(v)
            if best is None or (val_acc, -val_loss) > best[0]:
                best = ((val_acc, -val_loss), epoch, {k: v.clone() for k, v in model.state_dict().items()})
    train_seconds = time.perf_counter() - t0
    model.load_state_dict(best[2])
    model.eval()
    with torch.no_grad():
        metrics = {
            name: metrics_from_probs(Y[name].numpy(), torch.softmax(model(X[name]), -1).double().numpy(), config.labels)
            for name in names
            if name != train
        }
    n_params = count_parameters(model)
    return FinetuneResult(
        config=config, history=history, best_epoch=best[1], metrics=metrics, trainable_params=n_params, total_params=n_params,
        wall_seconds=time.perf_counter() - t_start, train_seconds=train_seconds, seconds_per_epoch=train_seconds / config.epochs,
        seconds_per_step=step_seconds / max(1, steps), peak_memory_bytes=mem.peak_bytes, peak_memory_method=mem.method,
        optimizer_state_bytes=optimizer_state_bytes(optimizer), gradient_bytes=n_params * 4,
        activation_bytes=int(X[train].nbytes), truncated_messages={name: 0 for name in names},
        device="cpu", precision="fp32", model=model,
    )
