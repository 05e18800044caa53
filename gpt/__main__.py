"""``python -m gpt <command>``: see :mod:`gpt.cli`."""

from .cli.pretrain import main

if __name__ == "__main__":
    raise SystemExit(main())
