"""Pins the notebooks' setup cells to one commit of the course: `python scripts/pin_notebooks.py [REF]`.

Every notebook's first code cell holds the constant `COURSE_REF`; in a fresh runtime (Colab) the cell
clones COURSE_REPO at that commit and installs it. REF defaults to `git rev-parse HEAD`: commit the
package first, then run this and commit the notebooks ("pin notebooks to <REF>"), so the notebooks
install exactly the package they were written for. tests/test_colab_setup.py checks that the pinned
commit's package and results equal the current ones. Only the `COURSE_REF = ...` line changes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gpt.teaching.classroom import set_setup_constants, source_notebooks

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    ref = sys.argv[1] if len(sys.argv) > 1 else subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    for path in source_notebooks(ROOT / "notebooks"):
        if set_setup_constants(path, ref=ref):
            print(f"pinned {path.relative_to(ROOT)} to {ref}")
