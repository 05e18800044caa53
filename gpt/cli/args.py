"""Argument types and checks shared by the commands: a bad value is an argparse error (status 2) that names the option."""

from __future__ import annotations

import argparse
import math
import os
import shlex

from ..io.downloads import PRETRAIN_BOOKS, REGISTRY
from ..errors import ConfigError

DEFAULT_CHECKPOINT_INTERVAL = 500



def int_at_least(lo: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {lo}, got {v}")
        return v

    parse.__name__ = f"integer >= {lo}"
    return parse



def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None



def positive_float(text: str) -> float:
    v = number(text)
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return v



def nonnegative_float(text: str) -> float:
    v = number(text)
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return v



def fraction(text: str) -> float:
    v = number(text)
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (both excluded), got {text!r}; 0.05 holds out 5 %")
    return v



def checkpoint_interval(text: str):
    if text == "auto":
        return "auto"
    try:
        return int_at_least(0)(text)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{e} (or 'auto')") from None



def auto_checkpoint_interval(steps: int) -> int:
    """``--checkpoint-interval auto``: about 10 checkpoints per run, at least every 500 steps."""
    return max(1, min(DEFAULT_CHECKPOINT_INTERVAL, steps // 10))



def parse_books(text: str) -> list[str]:
    """``--books``: comma-separated registry names of Gutenberg books; unknown or repeated names are refused."""
    if not text:
        return list(PRETRAIN_BOOKS)
    names = [b.strip() for b in text.split(",")]
    if any(not b for b in names):
        raise ConfigError(f"--books {text!r} has an empty name; give comma-separated names such as pg35,pg1342")
    for b in names:
        if b not in PRETRAIN_BOOKS:
            kind = "is a dataset, not one of the pretraining books" if b in REGISTRY else "is not a known book"
            raise ConfigError(f"--books: {b!r} {kind}; choose from {', '.join(PRETRAIN_BOOKS)}")
    twice = sorted({b for b in names if names.count(b) > 1})
    if twice:
        raise ConfigError(f"--books names {', '.join(twice)} more than once; name each book once")
    return names



def command_line(argv: list[str], drop=()) -> str:
    return "python -m gpt " + shlex.join([a for a in argv if a not in drop])



def resume_command(argv: list[str]) -> str:
    command = command_line(list(argv) + ([] if "--resume" in argv else ["--resume"]))
    world = os.environ.get("WORLD_SIZE", "")  # started by torchrun: resume the same way
    if world.isdigit() and int(world) > 1:
        command = command.replace("python -m gpt ", f"torchrun --nproc_per_node {os.environ.get('LOCAL_WORLD_SIZE', world)} -m gpt ", 1)
    return command
