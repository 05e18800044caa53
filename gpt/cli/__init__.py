"""Command line: ``python -m gpt <command>`` (see ``python -m gpt --help``)."""

from .pretrain import main  # noqa: F401
