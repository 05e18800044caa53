#!/usr/bin/env bash
# Installs everything the course needs into the current Python environment (or the one of $PYTHON):
# 1. torch: kept if already installed (Colab, a GPU machine); otherwise torch==2.13.0 is installed.
#    On a CPU-only machine elsewhere, set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu to get
#    the small CPU build instead of PyPI's CUDA build.
# 2. requirements.txt: the runtime, the notebook and test tools (pytest, nbval, ...) and the optional
#    extras that tests and notebooks use: peft ([peft]), transformers + huggingface_hub ([hf]) and
#    nbgrader ([classroom]). The torch of step 1 is pinned meanwhile (a constraint), so no package can
#    replace it (e.g. by a CUDA build): a conflict fails here instead.
# 3. the package itself, editable (`pip install --no-deps -e .`).
# A plain `pip install -e .` (core only) also works: the tests of a missing extra then skip.
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
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==$("$PY" -c "from importlib.metadata import version; print(version('torch'))")" > "$constraints"
"$PY" -m pip install -q -r requirements.txt -c "$constraints"
"$PY" -m pip install -q --no-deps -e .
