#!/usr/bin/env bash
# Installs everything the course needs into the current Python environment.
# torch: kept if already installed (Colab, a GPU machine); otherwise torch==2.13.0 is installed.
# On a CPU-only machine elsewhere, set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu to get
# the small CPU build instead of PyPI's CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        "$PY" -m pip install -q torch==2.13.0 --index-url "$TORCH_INDEX_URL"
    else
        "$PY" -m pip install -q torch==2.13.0
    fi
fi
"$PY" -m pip install -q -r requirements.txt
"$PY" -m pip install -q --no-deps -e .
