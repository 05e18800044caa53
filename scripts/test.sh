#!/usr/bin/env bash
# Sets up the environment and runs every test: unit tests plus all notebooks under nbval (CI profile).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export GPT_PROFILE=${GPT_PROFILE:-ci}
python3 -m pytest --nbval-lax tests notebooks "$@"
