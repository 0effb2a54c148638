#!/usr/bin/env bash
#SBATCH --job-name=wat_jax
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.out
# SLURM, any number of nodes: srun starts one process per GPU (the default) or
# one per node, each with WAT_JAX_DISTRIBUTED=1, so jax.distributed.initialize()
# reads the coordinator, process count and process id from SLURM itself.
#
#   sbatch [--nodes=N] launch/slurm.sh CONFIG WORKDIR [MODE] [--config.key=value ...]
#
# Example (4 nodes x 8 GPUs, global batch 640, bf16 compute):
#   sbatch --nodes=4 launch/slurm.sh experiments/babel60.py:paper /shared/runs/babel60 train \
#     --config.batch_size=640 --config.model.dtype=bfloat16
#
# One process per node instead: sbatch --ntasks-per-node=1 launch/slurm.sh ...
# (then JAX_LOCAL_DEVICE_IDS lists every GPU of the node; otherwise jax gives
# each process only the GPU numbered by its SLURM_LOCALID). Do not use
# --gpus-per-task: it hides the other GPUs from each task, and jax's device
# numbering by SLURM_LOCALID then points at GPUs that are not visible.
#
# WORKDIR must be on a filesystem every node sees: checkpoints are written
# collectively and the eval JSON by process 0. The venv is set up once, here,
# before srun, so nodes do not install into it at the same time.
#
# Settings that matter (export them before sbatch to override; sbatch passes
# the environment through):
#   XLA_PYTHON_CLIENT_MEM_FRACTION=.90 and
#   XLA_FLAGS=--xla_gpu_enable_latency_hiding_scheduler=true  (overlap the
#     gradient all-reduce with the backward pass), both from launch/gpu.sh
#   NCCL_IB_HCA / NCCL_SOCKET_IFNAME  which InfiniBand adapters and which
#     Ethernet interface NCCL uses (site specific; unset: NCCL's autodetect)
#   NCCL_IB_DISABLE=0, NCCL_NET_GDR_LEVEL=PHB  GPUDirect RDMA over InfiniBand
#   NCCL_DEBUG=WARN (INFO prints the chosen transport: check it says NET/IB)
#   JAX_COORDINATOR_PORT  when the port jax derives from the job id is taken
#   WAT_JAX_SKIP_SETUP=1  use the submitting environment instead of launch/setup.sh
#   WAT_JAX_JAX_EXTRA     jax extra for the GPUs when jax has no CUDA backend yet
#                         (default cuda13; "none" skips; launch/gpu.sh)
set -euo pipefail
ROOT="${WAT_JAX_ROOT:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}}"
if [ $# -lt 2 ]; then
  echo "usage: sbatch launch/slurm.sh CONFIG WORKDIR [MODE] [--config.key=value ...]" >&2
  exit 2
fi
if [ ! -f "$ROOT/wat_jax/main.py" ]; then
  echo "slurm: $ROOT is not the wat_jax checkout; submit from it or set WAT_JAX_ROOT" >&2
  exit 2
fi
CONFIG="$1"; WORKDIR="$2"; shift 2
MODE=all
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then MODE="$1"; shift; fi

if [ "${WAT_JAX_SKIP_SETUP:-0}" != 1 ]; then
  source "$ROOT/launch/setup.sh"  # once, on the batch host
fi
source "$ROOT/launch/gpu.sh"  # the CUDA backend when missing, XLA settings

export WAT_JAX_DISTRIBUTED=1
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
export NCCL_IB_DISABLE="${NCCL_IB_DISABLE:-0}"
export NCCL_NET_GDR_LEVEL="${NCCL_NET_GDR_LEVEL:-PHB}"
if [ "${SLURM_NTASKS_PER_NODE:-8}" = 1 ]; then
  gpus="${SLURM_GPUS_ON_NODE:-$(nvidia-smi -L | wc -l)}"
  export JAX_LOCAL_DEVICE_IDS="$(seq -s, 0 $((gpus - 1)))"
fi
cd "$ROOT"
mkdir -p "$WORKDIR"
echo "slurm: job ${SLURM_JOB_ID:-?}, ${SLURM_NNODES:-1} nodes, ${SLURM_NTASKS:-1} processes" >&2

srun --kill-on-bad-exit=1 python -m wat_jax.main --config="$CONFIG" --workdir="$WORKDIR" \
  --mode="$MODE" "$@"
