"""What defines a fine-tuning run: :class:`FinetuneConfig`, each strategy's tuned defaults, and labels.

* :class:`FinetuneConfig` -- every hyperparameter of a run (and of the bag-of-words baseline's), the
  data it trains on (``train_split``, ``fold``), the class weighting and, for LoRA, the rank, the scale
  and the variants (PEFT's names). Every field is checked on construction: a bad value is one
  :class:`~gpt.errors.ConfigError` naming it.
* :data:`DEFAULT_CONFIGS` / :func:`default_config` -- each strategy's defaults, chosen on validation;
  an override that does not apply to the strategy is refused, so a setting is never silently ignored.
* :attr:`FinetuneConfig.label` -- the name of a configuration in result tables (``full``, ``lora-r8``,
  ``lora-r8-dora``, ...; the naming rules are :mod:`gpt.io.run_names`).

The loop that uses it is :mod:`gpt.finetune`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .classifier import STRATEGIES
from .checks import check_choice, check_number, check_whole_number
from .errors import ConfigError
from .io.run_names import check_run_name, lora_label, lora_variant_suffix
from .lora.variants import INIT_LORA_WEIGHTS
from .model import ATTN_IMPLS
from .runtime.device import PRECISIONS
from .sms import LABELS, TRAIN_SPLITS


ALL_STRATEGIES = STRATEGIES + ("lora", "baseline")
CLASS_WEIGHTS = (None, "balanced")

# ---------------------------------------------------------------------------------------------
# The config and the result


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that defines a fine-tuning run (and the bag-of-words baseline's).

    Fields that apply to one kind of run only: ``r`` and ``lora_alpha`` (strategy ``lora``: the
    LoRA rank and the scale numerator, scale = lora_alpha / r), ``l2`` and ``min_count``
    (``baseline``: the L2 penalty and the vocabulary's minimum count); ``weight_decay``,
    ``warmup_fraction``, ``grad_clip``, ``dropout``, ``classifier_dropout``, ``bucket``,
    ``pad_to_multiple_of``, ``attn_impl``, ``device`` and ``precision`` apply to the GPT strategies. :func:`default_config` gives each
    strategy's tuned defaults and refuses a field that does not apply to it.
    """

    strategy: str = "full"
    epochs: int = 5
    lr: float = 5e-4
    batch_size: int = 16
    weight_decay: float = 0.0
    warmup_fraction: float = 0.1
    grad_clip: float | None = 1.0
    dropout: float = 0.0  # inside the transformer
    classifier_dropout: float = 0.1  # before the head
    r: int | None = None
    lora_alpha: float | None = None
    # LoRA variants (strategy "lora"; PEFT's names, see gpt.lora.variants): scale lora_alpha/√r; DoRA's
    # magnitudes; the start ("kaiming", "gaussian", "pissa"); LoRA+'s lr ratio of B to A (None: off);
    # the layers to wrap as module names ("q_proj", "attn", "mlp"; None: every Linear in the blocks).
    use_rslora: bool = False
    use_dora: bool = False
    init_lora_weights: str = "kaiming"
    loraplus_lr_ratio: float | None = None
    target_modules: tuple[str, ...] | None = None
    l2: float = 0.0
    min_count: int = 1
    bucket: int = 8  # sort chunks of bucket * batch_size messages by length (less padding)
    # How the same numbers are computed (each changes only rounding, so gpt.experiments.compare pairs runs that
    # differ in them): padded lengths rounded up to a multiple (repeated batch shapes reuse the CPU's
    # matmul kernels; None: the longest message), and the attention (gpt.model.CausalSelfAttention;
    # "auto" picks by device and precision, whatever the checkpoint was pretrained with; None: the checkpoint's).
    pad_to_multiple_of: int | None = 16
    attn_impl: str | None = "auto"
    seed: int = 0
    device: str = "cpu"
    precision: str = "auto"  # of the training steps; every evaluation runs in fp32
    eval_splits: tuple[str, ...] = ("test", "test_natural")
    labels: tuple[str, str] = LABELS
    train_split: str = "train"  # the split trained on: "train" (balanced) or "train_natural" (gpt.experiments.splits.natural_train)
    class_weight: str | None = None  # None, or "balanced": each class's loss weighted by n / (2 · n_class) of the training set
    fold: int | None = None  # None: the pinned splits; i: fold i of gpt.experiments.splits.kfold_splits(folds, i) (what run_finetune loads)
    folds: int = 5
    name: str | None = None  # the configuration's label in results (python -m gpt finetune --label); None: derived (label)

    def __post_init__(self):
        object.__setattr__(self, "eval_splits", tuple(self.eval_splits))
        object.__setattr__(self, "labels", tuple(self.labels))
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if self.strategy not in ALL_STRATEGIES:
            raise ConfigError(f"unknown strategy {self.strategy!r}; choose one of {list(ALL_STRATEGIES)}")
        for name in ("epochs", "batch_size", "bucket", "min_count"):
            check_whole_number(name, getattr(self, name), minimum=1)
        check_whole_number("seed", self.seed, minimum=0)
        check_number("lr", self.lr, low=0.0, low_open=True)
        for name in ("weight_decay", "l2"):
            check_number(name, getattr(self, name), low=0.0)
        check_number("warmup_fraction", self.warmup_fraction, low=0.0, high=1.0, high_open=True)
        for name in ("dropout", "classifier_dropout"):
            check_number(name, getattr(self, name), low=0.0, high=1.0, high_open=True)
        if self.grad_clip is not None:
            check_number("grad_clip", self.grad_clip, low=0.0, low_open=True)
        if self.pad_to_multiple_of is not None:
            check_whole_number("pad_to_multiple_of", self.pad_to_multiple_of, minimum=1)
        check_choice("attn_impl (None: the checkpoint's)", self.attn_impl, ATTN_IMPLS + (None,))
        check_choice("precision", self.precision, PRECISIONS)
        if self.strategy == "lora":
            if self.r is None or self.lora_alpha is None:
                raise ConfigError("strategy 'lora' needs r (the rank) and lora_alpha")
            check_whole_number("r", self.r, minimum=1)
            check_number("lora_alpha", self.lora_alpha, low=0.0, low_open=True)
            _check_lora_variant(self)
        elif self.r is not None or self.lora_alpha is not None:
            raise ConfigError(f"r and lora_alpha apply to strategy 'lora' only, not to {self.strategy!r}")
        else:
            changed = [k for k in LORA_VARIANT_FIELDS if getattr(self, k) != _VARIANT_DEFAULTS[k]]
            if changed:
                raise ConfigError(f"{', '.join(changed)} apply to strategy 'lora' only, not to {self.strategy!r}")
        if len(self.labels) != 2 or len(set(self.labels)) != 2 or not all(isinstance(x, str) and x for x in self.labels):
            raise ConfigError(f"labels must be two different class names, got {list(self.labels)}")
        check_choice("train_split", self.train_split, TRAIN_SPLITS)
        check_choice("class_weight", self.class_weight, CLASS_WEIGHTS)
        check_run_name(self.name)
        check_whole_number("folds", self.folds, minimum=2)
        if self.fold is not None:
            check_whole_number("fold", self.fold, minimum=0)
            if self.fold >= self.folds:
                raise ConfigError(f"fold must be below folds ({self.folds}), got {self.fold}")

    @property
    def label(self) -> str:
        """The name of this configuration in result tables: ``name`` when given, else the strategy, or
        ``lora-r8`` for LoRA, with the variants as suffixes (:func:`gpt.io.run_names.lora_variant_suffix`: ``lora-r8-dora``,
        ``lora-r8-qv``, ...). A results folder keeps one configuration per label
        (:func:`gpt.experiments.results.check_results_dir`), so its seeds can be averaged."""
        if self.name is not None:
            return self.name
        return lora_label(self.r) + lora_variant_suffix(self) if self.strategy == "lora" else self.strategy

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["eval_splits"], d["labels"] = list(self.eval_splits), list(self.labels)
        d["target_modules"] = list(self.target_modules) if self.target_modules is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FinetuneConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown FinetuneConfig fields {unknown}")
        return cls(**d)


LORA_VARIANT_FIELDS = ("use_rslora", "use_dora", "init_lora_weights", "loraplus_lr_ratio", "target_modules")
_VARIANT_DEFAULTS = {"use_rslora": False, "use_dora": False, "init_lora_weights": "kaiming", "loraplus_lr_ratio": None, "target_modules": None}


def _check_lora_variant(c: "FinetuneConfig") -> None:
    for name in ("use_rslora", "use_dora"):
        if not isinstance(getattr(c, name), bool):
            raise ConfigError(f"{name} must be True or False, got {getattr(c, name)!r}")
    check_choice("init_lora_weights", c.init_lora_weights, INIT_LORA_WEIGHTS)
    if c.loraplus_lr_ratio is not None:
        check_number("loraplus_lr_ratio", c.loraplus_lr_ratio, low=0.0, low_open=True)
    if c.target_modules is not None:
        names = c.target_modules
        if not names or not all(isinstance(n, str) and n.replace("_", "").replace(".", "").isalnum() for n in names):
            raise ConfigError(f"target_modules must be a non-empty list of module names such as 'q_proj', 'attn', 'mlp' "
                              f"(no patterns: they name the run), or None for every Linear in the blocks; got {names!r}")


# Each strategy's defaults, chosen on the validation split (2 seeds per setting) with the reference
# checkpoint; the sweep is described in results/finetune/README.md.
DEFAULT_CONFIGS: dict[str, FinetuneConfig] = {
    "full": FinetuneConfig("full", epochs=5, lr=5e-4),
    "last-block": FinetuneConfig("last-block", epochs=5, lr=1e-3),
    "head": FinetuneConfig("head", epochs=10, lr=3e-2),
    "lora": FinetuneConfig("lora", epochs=5, lr=3e-3, r=8, lora_alpha=16.0),
    "baseline": FinetuneConfig("baseline", epochs=30, lr=0.01, l2=1e-3, batch_size=32, classifier_dropout=0.0),
}
# Fields that mean something for one kind of run only (see FinetuneConfig).
ONLY_FOR = {
    "r": ("lora",), "lora_alpha": ("lora",), "l2": ("baseline",), "min_count": ("baseline",),
    **{k: ("lora",) for k in LORA_VARIANT_FIELDS},
    **{k: STRATEGIES + ("lora",) for k in ("weight_decay", "warmup_fraction", "grad_clip", "dropout",
                                           "classifier_dropout", "bucket", "device", "precision",
                                           "pad_to_multiple_of", "attn_impl")},
}


def default_config(strategy: str, **overrides) -> FinetuneConfig:
    """The tuned defaults of ``strategy`` (:data:`DEFAULT_CONFIGS`) with ``overrides``.

    An override that does not apply to the strategy (``r`` for ``full``, ``l2`` for ``lora``, ...)
    is a :class:`~gpt.errors.ConfigError`, so a setting is never silently ignored.
    """
    if strategy not in DEFAULT_CONFIGS:
        raise ConfigError(f"unknown strategy {strategy!r}; choose one of {list(DEFAULT_CONFIGS)}")
    known = {f.name for f in dataclasses.fields(FinetuneConfig)} - {"strategy"}
    for k in overrides:
        if k not in known:
            raise ConfigError(f"unknown FinetuneConfig field {k!r}")
        if k in ONLY_FOR and strategy not in ONLY_FOR[k]:
            raise ConfigError(f"{k} does not apply to the strategy {strategy!r} (only to {', '.join(ONLY_FOR[k])})")
    return dataclasses.replace(DEFAULT_CONFIGS[strategy], **overrides)
