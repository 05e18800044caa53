#!/usr/bin/env bash
# Sets up the environment and runs the course's main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m gpt pretrain --steps 300 --out runs/demo
