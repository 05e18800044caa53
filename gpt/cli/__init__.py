"""Command line: ``python -m gpt <command>`` (see ``python -m gpt --help``).

Every argparse parser and command handler of the package lives in this folder, and nothing else: a
handler parses flags into configs and calls the library. Each command checks its arguments and all
its output paths before any expensive work (loading or tokenizing the corpus, training). A problem
the user can fix (:class:`gpt.errors.GPTError`) is printed as one ``error: ...`` line and the command
exits with status 2; Ctrl-C exits with 130 (``pretrain`` saves a checkpoint first and prints the
command that resumes it). Other exceptions are bugs and keep their traceback.

- :mod:`gpt.cli.pretrain`: ``train-tokenizer``, ``pretrain``, ``sample``;
- :mod:`gpt.cli.finetune`: ``finetune``, ``experiment``, ``summarize``;
- :mod:`gpt.cli.dapt`: ``dapt``;
- :mod:`gpt.cli.classroom`: ``classroom handouts / release / grade / check``;
- :mod:`gpt.cli.args`: the argument types they share.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import GPTError
from . import classroom, dapt, finetune, pretrain


def main(argv=None) -> int:
    """Run one command; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m gpt", description="Build, pretrain and fine-tune a GPT from scratch.")
    sub = p.add_subparsers(dest="command", required=True)
    pretrain.register(sub)  # train-tokenizer, pretrain, sample
    finetune.register(sub)  # finetune, experiment, summarize
    dapt.register(sub)
    classroom.register(sub)  # classroom handouts / release / grade / check
    try:
        args = p.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a bad option (2, message already printed)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    args._argv = argv
    try:
        return args.func(args)
    except GPTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
