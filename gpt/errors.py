"""Errors a user can fix: each message names the problem and the fix.

Every error the package raises on purpose for bad input, a damaged or mismatched file, or an
output it will not overwrite derives from :class:`GPTError`. The command line (``python -m gpt``)
prints such an error as one ``error: ...`` line and exits with status 2, never with a traceback.
Each class also derives from the built-in type Python code would expect (``ValueError``,
``FileExistsError``, ...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class GPTError(Exception):
    """Base class: a problem the user can fix, explained in the message."""


class ConfigError(GPTError, ValueError):
    """An option or argument with a value that cannot work (``--eval-interval 0``, an empty prompt, ...)."""


class DataError(GPTError, RuntimeError):
    """A dataset file is missing, unreachable, unwritable, or not the expected bytes."""


class CheckpointError(GPTError, RuntimeError):
    """A checkpoint that is missing, damaged, incomplete, or does not belong to this run or model."""


class AdapterError(GPTError, ValueError):
    """An adapter that does not fit the model: another base, a missing/mis-shaped tensor, a bad file."""


class OutputExistsError(GPTError, FileExistsError):
    """An output path already holds something; the command refuses to overwrite it without ``--overwrite``."""
