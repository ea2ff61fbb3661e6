#!/usr/bin/env bash
# The prepared accelerator run (at most about 10 minutes on one GPU): the paper preset's train
# steps at batch 8 / 32 / 128 in float32 and bfloat16 with their utilisation, recall at 500 to
# 5,000 pairs, then a few minutes of quickstart training with the real loader in each dtype (with
# where its time went). Writes OUT/device_check.{json,md}.
#   bash launch/device_check.sh OUT [--peak_tflops=X] [--batches=8,32] [...]
#   bash launch/device_check.sh --dry-run OUT   (prints the commands)
# Installs .venv with JAX for CUDA 12 (pinned) and runs with JAX_PLATFORMS=cuda, so a machine
# without a usable GPU stops at once; set PLATFORM=tpu for a TPU VM.
set -euo pipefail
RUN=()
if [ "${1:-}" = "--dry-run" ]; then RUN=(echo "+"); export LW_DRY_RUN=1; shift; fi
if [ $# -lt 1 ]; then sed -n '6,7p' "$0"; exit 2; fi
OUT=$1; shift
PLATFORM=${PLATFORM:-cuda}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source launch/_venv.sh "$PLATFORM" "[$PLATFORM]"
export JAX_PLATFORMS=$PLATFORM PYTHONUNBUFFERED=1
[ "${LW_DRY_RUN:-0}" = 1 ] && echo "+ export JAX_PLATFORMS=$JAX_PLATFORMS"
"${RUN[@]}" "$VENV/bin/python" -m learning_words.device_check --config=configs/paper.py \
  --out="$OUT" --train_steps=300 "$@"
