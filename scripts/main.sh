#!/usr/bin/env bash
# Sets up the environment and runs the course's main job: the headline experiment
# (`python -m gpt experiment`: full / last-block / head fine-tuning, LoRA at ranks 1-32 and the
# bag-of-words baseline, 3 seeds each, on the shipped reference checkpoint; about 25 minutes on a
# 2-core CPU). Results: results/finetune/{results.csv,summary.md,accuracy_vs_params.png}.
# Extra arguments go to the experiment, e.g. `bash scripts/main.sh --skip-existing` to resume.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m gpt experiment "$@"
cat results/finetune/summary.md
