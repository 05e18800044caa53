"""How sure is an accuracy? Intervals and paired comparisons over the same test messages.

The balanced test split has 300 messages, so one message is worth 0.33 points of accuracy, and two
strategies that differ by one point may differ by three messages. Two tools make that visible:

* :func:`bootstrap_interval` -- a 95 % interval for a metric: draw the test messages with replacement
  many times, recompute the metric each time, keep the middle 95 % of the values (the percentile
  bootstrap). With several seeds, the same drawn messages are used for every seed and the seeds are
  pooled, so the interval covers both the finite test set and the seed-to-seed spread.
* :func:`paired_comparison` -- is strategy A better than B *on the same messages*? The bootstrap
  interval of the difference in accuracy (messages drawn together for both), and McNemar's exact
  test on the messages where exactly one of them is right. The verdict is "better" or "worse" only
  when the difference's interval excludes 0, else "no detectable difference".

Inputs are per-message outcomes: ``correct`` arrays of shape (messages,) or (seeds, messages), 1 where
the prediction was right. Everything is numpy; resampling is seeded, so results are reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["bootstrap_interval", "accuracy_interval", "f1_interval", "f1_of", "mcnemar_p", "paired_comparison", "PairedComparison", "verdict",
           "seed_paired_interval"]

N_RESAMPLES = 2000
LEVEL = 0.95


def _as_matrix(x) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"expected per-message values of shape (messages,) or (seeds, messages), got {a.shape}")
    return a


def _message_draws(n: int, n_resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def bootstrap_interval(n_messages: int, statistic, n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``statistic(idx)``, where ``idx`` is an array of ``n_messages``
    message indices drawn with replacement."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    values = np.array([statistic(idx) for idx in _message_draws(n_messages, n_resamples, seed)])
    lo, hi = np.nanpercentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def accuracy_interval(correct, **kw) -> tuple[float, float, float]:
    """(accuracy, low, high): accuracy pooled over seeds, and its bootstrap interval over messages."""
    c = _as_matrix(correct)
    lo, hi = bootstrap_interval(c.shape[1], lambda idx: c[:, idx].mean(), **kw)
    return float(c.mean()), lo, hi


def f1_of(y_true: np.ndarray, y_pred: np.ndarray, positive: int) -> float:
    """F1 of the ``positive`` class; ``y_pred`` may hold several seeds' predictions (seeds × messages): their mean F1."""
    tp = np.sum((y_pred == positive) & (y_true == positive), axis=-1)
    fp = np.sum((y_pred == positive) & (y_true != positive), axis=-1)
    fn = np.sum((y_pred != positive) & (y_true == positive), axis=-1)
    denom = 2 * tp + fp + fn
    return float(np.mean(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)))


def f1_interval(y_true, y_pred, positive: int = 1, **kw) -> tuple[float, float, float]:
    """(F1 of the ``positive`` class averaged over seeds, low, high). ``y_true``: (messages,);
    ``y_pred``: (messages,) or (seeds, messages)."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    p = p[None, :] if p.ndim == 1 else p
    if p.shape[-1] != t.shape[0]:
        raise ValueError(f"{t.shape[0]} labels but predictions of shape {p.shape}")
    lo, hi = bootstrap_interval(len(t), lambda idx: f1_of(t[idx], p[:, idx], positive), **kw)
    return f1_of(t, p, positive), lo, hi


def mcnemar_p(only_a: int, only_b: int) -> float:
    """McNemar's exact two-sided p-value: the chance of a split at least this uneven among the
    ``only_a + only_b`` messages where exactly one model is right, if both were equally good."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return float(min(1.0, 2 * tail))


def verdict(low: float, high: float) -> str:
    """"better" if the interval of (A − B) lies above 0, "worse" if below, else "no detectable difference"."""
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "no detectable difference"


@dataclass(frozen=True)
class PairedComparison:
    difference: float  # accuracy of A − accuracy of B, pooled over seeds
    low: float
    high: float
    only_a: int  # messages A gets right and B wrong (majority over seeds)
    only_b: int
    mcnemar_p: float
    verdict: str  # A is "better" / "worse" / "no detectable difference" than B


def paired_comparison(a_correct, b_correct, **kw) -> PairedComparison:
    """Compare A with B on the same messages: the bootstrap interval of the accuracy difference (the
    same messages drawn for both; each model's seeds pooled) and McNemar's test on the messages where
    the majority vote over seeds of exactly one of them is right."""
    a, b = _as_matrix(a_correct), _as_matrix(b_correct)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"A and B must be scored on the same messages, got {a.shape[1]} and {b.shape[1]}")
    ma, mb = a.mean(axis=0), b.mean(axis=0)  # per message: the share of seeds that got it right
    diff = float(ma.mean() - mb.mean())
    lo, hi = bootstrap_interval(a.shape[1], lambda idx: ma[idx].mean() - mb[idx].mean(), **kw)
    ra, rb = ma > 0.5, mb > 0.5
    only_a, only_b = int(np.sum(ra & ~rb)), int(np.sum(rb & ~ra))
    return PairedComparison(diff, lo, hi, only_a, only_b, mcnemar_p(only_a, only_b), verdict(lo, hi))


# Student's t, 97.5th percentile, by degrees of freedom (a two-sided 95 % interval).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def seed_paired_interval(differences) -> tuple[float, float, float]:
    """``(mean, low, high)``: the 95 % t-interval of the mean of per-seed differences (A − B on the same seed).

    The message bootstrap of :func:`paired_comparison` holds the runs fixed: it asks whether *these* runs
    predict differently. When A and B differ only in rounding, each seed's two runs drift apart like two
    seeds do, and that question is answered "yes" by chance. Whether A changes the *expected* accuracy
    is a question about the spread between seeds, which this interval answers (it needs two seeds or more)."""
    d = np.asarray(differences, dtype=float).ravel()
    if d.size < 2:
        raise ValueError(f"a seed-level interval needs at least two seeds, got {d.size}")
    df = d.size - 1
    t = _T975[max(k for k in _T975 if k <= df)] if df <= 30 else 1.96  # rounding df down: a slightly wider interval
    half = t * d.std(ddof=1) / math.sqrt(d.size)
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)
