"""The re-splits experiments use: the natural-distribution training set, the k-fold re-split, and a run's splits."""

import pytest

from gpt import sms
from gpt.errors import ConfigError
from gpt.experiments import splits as splits_module


# --- the natural training set and the k-fold re-split -------------------------------------------


def test_natural_train_is_everything_outside_val_and_test(splits):
    nat = splits_module.natural_train(splits)
    assert len(nat) == 4306 and nat["label"].value_counts().to_dict() == {"ham": 3784, "spam": 522}
    held_out = set(splits["val"]["text"]) | set(splits["test"]["text"]) | set(splits["test_natural"]["text"])
    assert not set(nat["text"]) & held_out
    assert set(splits["train"]["line"]) <= set(nat["line"])  # the balanced train split is a part of it
    assert list(nat["line"]) == sorted(nat["line"])  # file order


def test_kfold_tests_every_message_once_without_leaks(splits):
    seen = []
    for i in range(5):
        f = splits_module.kfold_splits(5, i)
        texts = {n: set(d["text"]) for n, d in f.items()}
        for a, b in [("train", "val"), ("train", "test_natural"), ("val", "test_natural")]:
            assert not texts[a] & texts[b], f"fold {i}: {a} and {b} share texts"
        counts = {n: d["label"].value_counts().to_dict() for n, d in f.items()}
        assert counts["test"]["spam"] == counts["test"]["ham"] == counts["test_natural"]["spam"]
        assert counts["train"]["spam"] == counts["train"]["ham"] and counts["val"]["spam"] == counts["val"]["ham"]
        assert set(f["test"]["line"]) <= set(f["test_natural"]["line"])
        assert 1110 <= len(f["test_natural"]) <= 1120 and 1040 <= len(f["train"]) <= 1050
        seen += list(f["test_natural"]["line"])
    assert sorted(seen) == list(range(1, 5575))  # every message of the collection tested exactly once
    a, b = splits_module.kfold_splits(5, 2), splits_module.kfold_splits(5, 2)
    assert all(a[n].equals(b[n]) for n in sms.SPLIT_NAMES)  # deterministic
    assert not splits_module.kfold_splits(4, 0)["test"].equals(a["test"])


@pytest.mark.parametrize("folds, fold, phrase", [(1, 0, "folds must be"), (5, 5, "fold must be"), (5, -1, "fold must be"), (5, 1.0, "fold must be")])
def test_kfold_refuses_bad_folds(folds, fold, phrase):
    with pytest.raises(ConfigError, match=phrase):
        splits_module.kfold_splits(folds, fold)


def test_run_splits(splits):
    assert set(splits_module.run_splits()) == set(sms.SPLIT_NAMES)
    with_natural = splits_module.run_splits("train_natural", fold=1, folds=5)
    assert len(with_natural["train_natural"]) > 3 * len(with_natural["train"])
    assert with_natural["test"].equals(splits_module.kfold_splits(5, 1)["test"])
    with pytest.raises(ConfigError, match="train_split must be one of"):
        splits_module.run_splits("everything")
