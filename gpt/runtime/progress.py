"""Progress bars: a widget in Jupyter, text in a terminal, and text when ``GPT_PROGRESS=text``.

Notebooks are executed for committing with ``GPT_PROGRESS=text``: a widget would be saved as a
placeholder (its text fallback reads "0%"), while a text bar is saved as its final line
(``scripts/strip_notebooks.sh`` keeps only the last state of a line rewritten with ``\\r``).
"""

from __future__ import annotations

import os
import sys


def progress_bar(iterable=None, **kwargs):
    """A ``tqdm`` bar over ``iterable`` (or a manual one with ``total=``); the keyword arguments are tqdm's."""
    if os.environ.get("GPT_PROGRESS") == "text":
        from tqdm.std import tqdm  # here, not at the top: tqdm picks its widget or text form when a bar is made

        kwargs.setdefault("file", sys.stdout)
    else:
        from tqdm.auto import tqdm  # here, not at the top: tqdm picks its widget or text form when a bar is made
    return tqdm(iterable, **kwargs)
