"""Classification metrics against hand counts, and bad input."""

import numpy as np
import pytest

from gpt.errors import ConfigError
from gpt.metrics import classification_metrics, metrics_from_probs


def test_classification_metrics():
    m = classification_metrics([0, 0, 1, 1, 1], [0, 1, 1, 1, 0])
    assert m["confusion"] == [[1, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(0.6) and m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(2 / 3)
    assert classification_metrics([0, 0], [0, 0])["f1"] == 0.0  # no positive class: F1 reported as 0


def test_metrics_from_probs():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    m = metrics_from_probs(np.array([0, 1, 1]), probs, ("ham", "spam"))
    assert m["predicted"] == ["ham", "spam", "ham"] and m["spam_probability"] == [0.1, 0.8, 0.4]
    assert m["loss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4])))


@pytest.mark.parametrize(
    "y_true, y_pred, phrase",
    [([], [], "non-empty"), ([0, 1], [0], "same length"), ([[0, 1]], [[0, 1]], "1-D"), ([0, 2], [0, 1], "class ids 0 and 1")],
)
def test_bad_input(y_true, y_pred, phrase):
    with pytest.raises(ConfigError, match=phrase):
        classification_metrics(y_true, y_pred)
