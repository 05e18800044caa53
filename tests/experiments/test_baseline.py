"""The bag-of-words baseline: learns a separable toy set, same config and result as finetune, bad input."""

import pytest

from gpt.experiments.baseline import BagOfWords, train_baseline, words
from gpt.errors import ConfigError
from gpt.finetune import FinetuneResult, default_config
from helpers_classify import toy_splits


def test_baseline_learns_a_separable_toy_set():
    r = train_baseline(toy_splits(), default_config("baseline", epochs=30, lr=0.05, batch_size=4), progress=False)
    assert isinstance(r, FinetuneResult) and r.config.label == "baseline"
    assert r.metrics["test"]["accuracy"] == 1.0 and r.metrics["val"]["f1"] == 1.0
    assert r.trainable_params == 2 * len(r.model.vocabulary) + 2
    p = r.model.predict_proba(["win free cash prize now", "see you at lunch"])[:, 1]
    assert p[0] > 0.5 > p[1]


def test_baseline_uses_the_configured_labels():
    relabel = {"ham": "twain", "spam": "dickens"}
    splits = {k: v.assign(label=v["label"].map(relabel)) for k, v in toy_splits().items()}
    r = train_baseline(splits, default_config("baseline", epochs=30, lr=0.05, batch_size=4, labels=("twain", "dickens")), progress=False)
    assert r.metrics["test"]["predicted"] == ["dickens", "dickens", "twain", "twain"]
    with pytest.raises(ConfigError, match="labels must be one of|both classes"):
        train_baseline(splits, progress=False)


def test_words():
    assert words("WIN £1000 now!!") == ["win", "£", "1000", "now", "!", "!"]


@pytest.mark.parametrize(
    "call, phrase",
    [
        (lambda: train_baseline(toy_splits(), default_config("full"), progress=False), "strategy 'baseline'"),
        (lambda: train_baseline(toy_splits(), default_config("baseline", min_count=1000), progress=False), "vocabulary is empty"),
        (lambda: BagOfWords(["a"]).features("one message"), "single message"),
        (lambda: train_baseline({"train": toy_splits()["train"]}, progress=False), "'train' and 'val'"),
    ],
)
def test_bad_input(call, phrase):
    with pytest.raises(ConfigError, match=phrase):
        call()


def test_baseline_trains_on_the_configured_split_with_class_weights():
    splits = toy_splits()
    skewed = splits["train"].iloc[[0] + list(range(12, 24))].reset_index(drop=True)  # 1 spam, 12 ham
    plain = train_baseline({**splits, "train_natural": skewed}, default_config("baseline", epochs=3, train_split="train_natural"), progress=False)
    weighted = train_baseline({**splits, "train_natural": skewed},
                              default_config("baseline", epochs=3, train_split="train_natural", class_weight="balanced"), progress=False)
    assert plain.history["train_loss"] != weighted.history["train_loss"]
    assert "train_natural" not in plain.metrics and set(plain.metrics) == {"val", "test"}
    # its vocabulary comes from the split it trains on: one spam message's words only
    assert "urgent" not in plain.model.vocabulary and "win" in plain.model.vocabulary
