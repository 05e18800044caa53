"""Tiny models and toy splits shared by the fine-tuning tests (imported by the test modules)."""

import pandas as pd
import torch

from gpt.classifier import GPTClassifier
from gpt.model import GPT, GPTConfig

TINY = dict(vocab_size=4096, context_length=64, n_layer=2, n_head=2, n_embd=32)
TINY_ONE_BLOCK = {**TINY, "n_layer": 1}  # the experiments' checkpoint (tests/experiments/conftest.py)


def tiny_gpt(seed=0, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**TINY, **overrides}))


def tiny_classifier(seed=0, **overrides) -> GPTClassifier:
    return GPTClassifier.from_gpt(tiny_gpt(seed, **overrides), seed=seed)


def toy_splits():
    spam = ["WIN a FREE prize now! Call 0800 123", "URGENT! You have won cash, txt CLAIM to 8888", "Free entry: win £1000 cash now"]
    ham = ["see you at lunch", "ok i will call you later", "are we still meeting tonight?"]
    df = lambda s, h: pd.DataFrame({"label": ["spam"] * len(s) + ["ham"] * len(h), "text": s + h})  # noqa: E731
    return {"train": df(spam * 4, ham * 4), "val": df(spam, ham), "test": df(spam[:2], ham[:2])}
