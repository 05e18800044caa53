"""Classification metrics: accuracy, precision, recall, F1 and the confusion matrix.

Label 1 is the positive class (spam, or whatever ``labels[1]`` names), so precision, recall and F1
describe how well that class is found.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError


def classification_metrics(y_true, y_pred) -> dict:
    """Accuracy, and precision / recall / F1 of the positive class (1 = spam), plus the confusion matrix.

    ``confusion[i][j]`` counts messages of true class ``i`` predicted as ``j`` (rows: true ham,
    true spam). A precision or recall whose denominator is 0 is reported as 0.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ConfigError(
            f"y_true and y_pred must be non-empty 1-D arrays of the same length, got shapes {y_true.shape} and {y_pred.shape}"
        )
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if not np.isin(y, (0, 1)).all():
            raise ConfigError(f"{name} must hold class ids 0 and 1 only, found {sorted(set(y.tolist()) - {0, 1})[:5]}")
    y_true, y_pred = y_true.astype(np.int64), y_pred.astype(np.int64)
    tp = int(((y_true == 1) & (y_pred == 1)).sum())
    fp = int(((y_true == 0) & (y_pred == 1)).sum())
    fn = int(((y_true == 1) & (y_pred == 0)).sum())
    tn = int(((y_true == 0) & (y_pred == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_true == y_pred).mean()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "confusion": [[tn, fp], [fn, tp]],
    }


def metrics_from_probs(y: np.ndarray, probs: np.ndarray, labels) -> dict:
    """:func:`classification_metrics` of the most likely class, plus the mean cross-entropy ``loss``,
    ``spam_probability`` (the probability of ``labels[1]`` per example) and ``predicted`` (label names)."""
    pred = probs.argmax(axis=1)
    m = classification_metrics(y, pred)
    m["loss"] = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())
    m["spam_probability"] = probs[:, 1].tolist()
    m["predicted"] = [labels[i] for i in pred]
    return m
