#!/usr/bin/env bash
# Runs ebmjax on every worker of a Cloud TPU VM pod slice (e.g. v4-32, v5e-64): one process per
# host, the chips of all hosts in one mesh. Run it from your workstation (needs the gcloud CLI).
#
# Usage:
#   launch/tpu_pod.sh TPU_NAME ZONE [ebmjax.main arguments...]
# Example:
#   launch/tpu_pod.sh my-v4-32 us-central2-b --config configs/mdsm_cifar.py --workdir /mnt/shared/runs/cifar
#
# What it does, on all workers at once (gcloud ... --worker=all):
#   1. copies this checkout to ~/ebmjax on every worker and installs it with `pip install -e . jax[tpu]`
#      (set SKIP_INSTALL=1 to skip that on later runs);
#   2. starts `python3 -m ebmjax.main ... --config.dist.initialize=yes` on every worker. JAX finds
#      the other workers from the TPU metadata; each worker loads only its part of every batch.
#
# The workdir must be the same directory on every worker: a shared filesystem (Filestore/NFS, or a
# bucket mounted with gcsfuse at the same path everywhere). Only worker 0 writes metrics, config.json
# and pictures; every worker writes its part of the checkpoints. tfds data must be prepared where
# every worker can read it (--config.data.data_dir).
#
# Preemption (spot / preemptible TPUs): the TPU runtime sends SIGTERM; all workers save a checkpoint
# at the same step and stop. Recreate the slice and rerun the same command: training resumes exactly.
# To stop a run by hand (same effect):
#   gcloud compute tpus tpu-vm ssh TPU_NAME --zone ZONE --worker=all --command 'pkill -TERM -f ebmjax.main'
# Each worker keeps its log in ~/ebmjax/run.log; worker 0's output is also shown here.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
TPU_NAME=$1
ZONE=$2
shift 2
REPO=$(cd "$(dirname "$0")/.." && pwd)
REMOTE_DIR=${REMOTE_DIR:-ebmjax}
TPU=(gcloud compute tpus tpu-vm)

# Quote the training arguments once, so that they reach Python unchanged through the remote shell.
ARGS=$(printf '%q ' "$@")

echo "Copying $REPO to ~/$REMOTE_DIR on every worker of $TPU_NAME ..."
TARBALL=$(mktemp /tmp/ebmjax.XXXXXX.tar.gz)
trap 'rm -f "$TARBALL"' EXIT
tar -C "$REPO" --exclude=.git --exclude=runs --exclude=.venv -czf "$TARBALL" .
"${TPU[@]}" scp "$TARBALL" "$TPU_NAME:ebmjax.tar.gz" --zone "$ZONE" --worker=all
"${TPU[@]}" ssh "$TPU_NAME" --zone "$ZONE" --worker=all \
  --command "mkdir -p ~/$REMOTE_DIR && tar -xzf ~/ebmjax.tar.gz -C ~/$REMOTE_DIR"

if [[ "${SKIP_INSTALL:-0}" != 1 ]]; then
  "${TPU[@]}" ssh "$TPU_NAME" --zone "$ZONE" --worker=all \
    --command "cd ~/$REMOTE_DIR && python3 -m pip install -q -e . 'jax[tpu]'"
fi

# The same command on every worker; gcloud returns when all have finished.
"${TPU[@]}" ssh "$TPU_NAME" --zone "$ZONE" --worker=all \
  --command "set -o pipefail; cd ~/$REMOTE_DIR && python3 -m ebmjax.main $ARGS --config.dist.initialize=yes --no-progress 2>&1 | tee run.log"
