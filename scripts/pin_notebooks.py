"""Pins the notebooks to one commit of the course: `python scripts/pin_notebooks.py [REF]`.

Every solved notebook (notebooks/solutions/) gets REF as the `COURSE_REF` of its setup cell (its first
code cell; in a fresh runtime such as Colab the cell clones COURSE_REPO at that commit and installs it)
and in its Colab badge; the badges of README.md and notebooks/README.md get it too. Every badge opens
the handout notebooks/NN_name.ipynb at REF. Then the handouts are regenerated from the pinned solved
notebooks (as `python -m gpt classroom handouts` does), so they carry the same pin.

REF defaults to `git rev-parse HEAD`: commit the package first, then run this and commit the notebooks
("pin notebooks to <REF>"), so the notebooks install exactly the package they were written for.
tests/test_colab_setup.py checks that the pinned commit's package and results equal the current ones
and that every badge opens a handout at the pinned commit.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gpt.teaching.classroom import source_notebooks
from gpt.teaching.handouts import check_ref, set_badges_in_file, set_setup_constants, write_handouts

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("README.md", "notebooks/README.md")  # the pages whose notebook tables hold Colab badges

if __name__ == "__main__":
    ref = check_ref(sys.argv[1] if len(sys.argv) > 1 else subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip())
    for path in source_notebooks(ROOT / "notebooks" / "solutions"):
        if set_setup_constants(path, ref=ref):
            print(f"pinned {path.relative_to(ROOT)} to {ref}")
    for page in PAGES:
        if set_badges_in_file(ROOT / page, ref=ref):
            print(f"pinned the badges of {page} to {ref}")
    for line in write_handouts(ROOT / "notebooks" / "solutions", ROOT / "notebooks"):
        print(f"regenerated: {line}")
