"""Pins the notebooks' setup cells to one commit of the course: `python scripts/pin_notebooks.py [REF]`.

Every notebook's first code cell holds the constant `COURSE_REF`; in a fresh runtime (Colab) the cell
clones COURSE_REPO at that commit and installs it. REF defaults to `git rev-parse HEAD`: commit the
package first, then run this and commit the notebooks ("pin notebooks to <REF>"), so the notebooks
install exactly the package they were written for. tests/test_colab_setup.py checks that the pinned
commit's package and results equal the current ones. Only the `COURSE_REF = ...` line changes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REF_LINE = re.compile(r'^COURSE_REF = "[^"]*"', re.MULTILINE)


def pin(ref: str) -> list[Path]:
    changed = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        text = path.read_text()
        nb = json.loads(text)
        setup = next(c for c in nb["cells"] if c["cell_type"] == "code")
        source = "".join(setup["source"])
        if not REF_LINE.search(source):
            raise SystemExit(f"{path.name}: its first code cell has no COURSE_REF line")
        new = REF_LINE.sub(f'COURSE_REF = "{ref}"', source)
        if new != source:
            setup["source"] = new.splitlines(keepends=True)
            tmp = path.with_suffix(".ipynb.tmp")
            tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            tmp.replace(path)
            changed.append(path)
    return changed


if __name__ == "__main__":
    ref = sys.argv[1] if len(sys.argv) > 1 else subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    for path in pin(ref):
        print(f"pinned {path.relative_to(ROOT)} to {ref}")
