"""``python -m gpt <command>``: see :mod:`gpt.cli`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
