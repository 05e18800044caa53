"""gpt.experiments.stats: bootstrap intervals and paired comparisons behave as the statistics say they should."""

import math

import numpy as np
import pytest

from gpt.metrics import classification_metrics
from gpt.experiments.stats import accuracy_interval, f1_interval, mcnemar_p, paired_comparison, verdict


def test_accuracy_interval_brackets_the_accuracy_and_matches_the_normal_approximation():
    rng = np.random.default_rng(0)
    correct = rng.random(300) < 0.9
    acc, lo, hi = accuracy_interval(correct)
    assert lo < acc < hi and acc == correct.mean()
    half = 1.96 * math.sqrt(acc * (1 - acc) / 300)  # the textbook interval for a proportion
    assert abs((hi - lo) / 2 - half) < 0.2 * half


def test_more_messages_give_a_narrower_interval_and_perfect_scores_a_point():
    rng = np.random.default_rng(1)
    _, lo1, hi1 = accuracy_interval(rng.random(100) < 0.8)
    _, lo2, hi2 = accuracy_interval(rng.random(2000) < 0.8)
    assert hi2 - lo2 < (hi1 - lo1) / 2
    assert accuracy_interval(np.ones(50)) == (1.0, 1.0, 1.0)


def test_seeds_are_pooled_over_the_same_messages():
    a = np.array([[1, 1, 0, 0], [1, 0, 1, 0]])
    acc, lo, hi = accuracy_interval(a, n_resamples=500)
    assert acc == 0.5 and 0 <= lo <= 0.5 <= hi <= 1


def test_f1_interval_equals_the_metrics_f1_for_one_seed():
    rng = np.random.default_rng(2)
    y = (rng.random(400) < 0.3).astype(int)
    pred = np.where(rng.random(400) < 0.85, y, 1 - y)
    f1, lo, hi = f1_interval(y, pred)
    assert f1 == pytest.approx(classification_metrics(y, pred)["f1"])
    assert lo < f1 < hi


def test_mcnemar_exact_p_values():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(10, 0) == pytest.approx(2 / 1024)
    assert mcnemar_p(2, 8) == mcnemar_p(8, 2) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert mcnemar_p(5, 5) == 1.0


def test_paired_comparison_verdicts():
    rng = np.random.default_rng(3)
    b = (rng.random((3, 300)) < 0.85).astype(int)
    b[:, :40] = 0  # B gets the first 40 messages wrong with every seed ...
    a = b.copy()
    a[:, :40] = 1  # ... and A gets them right
    better = paired_comparison(a, b)
    assert better.verdict == "better" and better.difference > 0 and better.low > 0 and better.only_b == 0 and better.only_a == 40
    assert better.mcnemar_p < 0.01
    assert paired_comparison(b, a).verdict == "worse"
    same = paired_comparison(b, b)
    assert same.difference == 0 and same.verdict == "no detectable difference" and same.mcnemar_p == 1.0
    assert verdict(-0.01, 0.02) == "no detectable difference"
    with pytest.raises(ValueError, match="same messages"):
        paired_comparison(a[:, :10], b)


def test_seed_paired_interval_is_a_t_interval_over_seeds():
    from gpt.experiments.stats import seed_paired_interval

    mean, low, high = seed_paired_interval([0.0, 0.67, 1.33, -0.67, 0.67])
    assert mean == pytest.approx(0.4) and low < 0 < high  # 5 seeds, sd 0.76: t(4) = 2.776
    assert high - mean == pytest.approx(2.776 * np.std([0.0, 0.67, 1.33, -0.67, 0.67], ddof=1) / 5 ** 0.5)
    assert seed_paired_interval([1.0, 1.2, 0.9, 1.1])[1] > 0  # a consistent shift is detected
    with pytest.raises(ValueError, match="two seeds"):
        seed_paired_interval([1.0])
