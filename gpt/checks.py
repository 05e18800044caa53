"""Checks of settings, one style for the whole package: a value that cannot work is a
:class:`~gpt.errors.ConfigError` naming the setting, what it must be, and what it got
("TrainConfig.lr must be a finite number > 0, got 0.0").

The configs (:class:`~gpt.model.GPTConfig`, :class:`~gpt.train_config.TrainConfig`,
:class:`~gpt.finetune_config.FinetuneConfig`) check their fields with these on construction.
"""

from __future__ import annotations

import math
import numbers

from .errors import ConfigError


def is_whole_number(x) -> bool:
    """An int (numpy's too), not a bool."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def is_finite_number(x) -> bool:
    """A finite int or float (numpy's too), not a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def check_whole_number(name: str, value, minimum: int | None = None, maximum: int | None = None) -> None:
    """``value`` is a whole number (>= ``minimum``, <= ``maximum``)."""
    if not is_whole_number(value) or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(f"{name} must be a whole number{_bounds(minimum, maximum, False, False)}, got {value!r}")


def check_bool(name: str, value) -> None:
    """``value`` is True or False (not 0 / 1, not a string)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}")


def check_number(name: str, value, low: float | None = None, high: float | None = None, low_open: bool = False,
                 high_open: bool = False) -> None:
    """``value`` is a finite number between ``low`` and ``high`` (each bound included unless ``*_open``)."""
    ok = is_finite_number(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise ConfigError(f"{name} must be a finite number{_bounds(low, high, low_open, high_open)}, got {value!r}")


def check_choice(name: str, value, choices) -> None:
    """``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}")


def _bounds(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""
