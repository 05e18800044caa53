#!/usr/bin/env bash
# Cleans executed notebooks before committing, keeping their outputs:
#   1. merges each cell's consecutive stdout/stderr chunks and keeps only the final state of lines
#      rewritten with '\r' (a progress bar becomes one line instead of hundreds of updates);
#   2. nbstripout drops noisy metadata. It keeps the outputs and the execution counts: nbval refuses
#      a cell that has outputs but no execution count ("Unrun reference cell has outputs"), and
#      after a fresh `nbconvert --execute` the counts are simply 1, 2, 3, ...
# Usage: bash scripts/strip_notebooks.sh [notebooks...]   (default: the solved notebooks, notebooks/solutions/*.ipynb;
# the handouts notebooks/*.ipynb are generated from them: python -m gpt classroom handouts)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -eq 0 ]; then
    set -- notebooks/solutions/*.ipynb
fi
jupyter nbconvert --log-level=WARN --coalesce-streams "$@"
nbstripout --keep-output --keep-count "$@"
