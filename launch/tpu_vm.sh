#!/usr/bin/env bash
# Create a Cloud TPU VM slice, install the project on every worker and run the entry point there.
#   bash launch/tpu_vm.sh [--dry-run] NAME ZONE ACCELERATOR CONFIG WORKDIR [--config.key=value ...]
#   e.g. bash launch/tpu_vm.sh lw-v4 us-central2-b v4-32 configs/paper.py gs://BUCKET/lw \
#          --config.data.official_dir=/mnt/audio_clevrgan
# Every worker runs the same command; jax.distributed picks the slice up from the TPU environment.
# Each worker installs .venv with JAX for TPUs and gcsfs (the [tpu,gcs] extras, pinned versions)
# and runs with JAX_PLATFORMS=tpu, so a worker without its TPU stops at once instead of running on
# its CPU. WORKDIR: gs://BUCKET/PATH (checkpoints and logs outlive the VMs; every worker sees
# them) or a folder mounted on every worker.
set -euo pipefail
RUN=()
if [ "${1:-}" = "--dry-run" ]; then RUN=(echo "+"); shift; fi
if [ $# -lt 5 ]; then sed -n '2,6p' "$0"; exit 2; fi
NAME=$1 ZONE=$2 ACCEL=$3 CONFIG=$4 WORKDIR=$5; shift 5
REPO=${REPO:-https://github.com/OWNER/learning_words.git}
VERSION=${TPU_SOFTWARE:-tpu-ubuntu2204-base}
"${RUN[@]}" gcloud compute tpus tpu-vm create "$NAME" --zone="$ZONE" \
  --accelerator-type="$ACCEL" --version="$VERSION"
REMOTE="set -e; [ -d learning_words ] || git clone $REPO learning_words; cd learning_words; \
source launch/_venv.sh tpu '[tpu,gcs]'; \
JAX_PLATFORMS=tpu \$VENV/bin/python -m learning_words.main --config=$CONFIG --workdir=$WORKDIR \
--mode=pipeline $*"
"${RUN[@]}" gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --worker=all --command="$REMOTE"
