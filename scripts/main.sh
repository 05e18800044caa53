#!/usr/bin/env bash
# Sets up the environment and runs the course's main job: the headline experiment
# (`python -m gpt experiment`: full / last-block / head fine-tuning, LoRA at ranks 1-32 and the
# bag-of-words baseline, 3 seeds each, on the shipped reference checkpoint).
# It writes a new run folder runs/experiment/<date>-<time>/ (never the committed results/); run again,
# it resumes its own unfinished run. It ends with its results beside the committed ones
# (results/finetune), one verdict per strategy: identical, same within noise, or differs.
# GPT_PROFILE=ci makes it a smoke run (one seed, LoRA r=8 only, one epoch per run).
# Extra arguments go to the experiment, e.g. `bash scripts/main.sh --out results/finetune --overwrite`
# to replace the committed results (a deliberate step, see docs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m gpt experiment "$@"
