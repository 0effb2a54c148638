#!/usr/bin/env bash
# A Cloud TPU VM or pod slice: copies this checkout to every worker, sets up
# its venv with jax[tpu], and starts one process per worker through
# `gcloud compute tpus tpu-vm ssh --worker=all`. WAT_JAX_DISTRIBUTED=1 lets
# jax.distributed.initialize() find the pod's coordinator and process ids.
#
#   TPU=NAME ZONE=ZONE [PROJECT=ID] bash launch/tpu_vm.sh CONFIG WORKDIR [MODE] [--config.key=value ...]
#
# Example (a v5p-32 slice, 4 workers x 4 chips, bf16 compute):
#   TPU=wat-v5p ZONE=us-east5-a bash launch/tpu_vm.sh experiments/babel60.py:paper \
#     gs-fuse/runs/babel60 train --config.batch_size=640 --config.model.dtype=bfloat16
#
# WORKDIR must be a path every worker sees (a gcsfuse or Filestore mount):
# checkpoints are written collectively and the eval JSON by process 0.
# The data a config names (data.amass_root, ...) must exist on every worker.
#
# Settings that matter:
#   LIBTPU_INIT_ARGS  passed through to every worker; by default it turns on the
#     latency-hiding scheduler (--xla_tpu_enable_latency_hiding_scheduler=true)
#     so the gradient all-reduce overlaps the backward pass
#   REMOTE_DIR        where the checkout goes on the workers (default ~/wat_jax)
#   SYNC=0            skip copying the checkout (it is already there)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 2 ] || [ -z "${TPU:-}" ] || [ -z "${ZONE:-}" ]; then
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' >&2
  exit 2
fi
CONFIG="$1"; WORKDIR="$2"; shift 2
MODE=all
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then MODE="$1"; shift; fi
REMOTE_DIR="${REMOTE_DIR:-wat_jax}"
LIBTPU_INIT_ARGS="${LIBTPU_INIT_ARGS:---xla_tpu_enable_latency_hiding_scheduler=true}"
GCLOUD=(gcloud compute tpus tpu-vm)
WHERE=(--zone="$ZONE" ${PROJECT:+--project="$PROJECT"})

if [ "${SYNC:-1}" = 1 ]; then
  # Only the source: not the local venv, runs or caches.
  tarball="$(mktemp --suffix=.tar.gz)"
  trap 'rm -f "$tarball"' EXIT
  tar -C "$ROOT" --exclude=.venv --exclude=runs --exclude=.git --exclude='__pycache__' \
    -czf "$tarball" .
  "${GCLOUD[@]}" scp "$tarball" "$TPU:/tmp/wat_jax.tar.gz" --worker=all "${WHERE[@]}"
  "${GCLOUD[@]}" ssh "$TPU" --worker=all "${WHERE[@]}" \
    --command="mkdir -p ~/$REMOTE_DIR && tar -C ~/$REMOTE_DIR -xzf /tmp/wat_jax.tar.gz"
fi

# printf %q keeps each argument one word through the remote shell.
args="$(printf '%q ' --config="$CONFIG" --workdir="$WORKDIR" --mode="$MODE" "$@")"
remote="set -euo pipefail
cd ~/$REMOTE_DIR
source launch/setup.sh
# setup.sh installs the CPU jax of requirements.txt; the TPU runtime comes with jax[tpu].
if ! python -c 'import libtpu' 2>/dev/null; then
  python -m pip install -q \"jax[tpu]==\$(python -c 'import jax; print(jax.__version__)')\"
fi
export WAT_JAX_DISTRIBUTED=1 LIBTPU_INIT_ARGS=$(printf '%q' "$LIBTPU_INIT_ARGS")
exec python -m wat_jax.main $args"
"${GCLOUD[@]}" ssh "$TPU" --worker=all "${WHERE[@]}" --command="bash -c $(printf '%q' "$remote")"
