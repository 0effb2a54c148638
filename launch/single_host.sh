#!/usr/bin/env bash
# One host with any number of local accelerators (or only its CPU): one process
# that sees every local device, running `python -m wat_jax.main`.
#
#   bash launch/single_host.sh CONFIG WORKDIR [MODE] [--config.key=value ...]
#
# Example (8 GPUs, bf16 compute, the whole pipeline):
#   bash launch/single_host.sh experiments/babel60.py:paper runs/babel60 all \
#     --config.model.dtype=bfloat16
#
# Settings that matter (export them before calling to override): on a GPU host
# launch/gpu.sh installs jax's CUDA backend when missing and sets
# XLA_PYTHON_CLIENT_MEM_FRACTION=.90 and the latency-hiding scheduler in XLA_FLAGS
# (its header lists them all).
#   WAT_JAX_SKIP_SETUP=1  use the current environment instead of launch/setup.sh
#   WAT_JAX_PYTHON        the interpreter: the one the venv is made from (launch/setup.sh),
#                         or with WAT_JAX_SKIP_SETUP=1 the one that runs (default: python)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 2 ]; then
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' >&2
  exit 2
fi
CONFIG="$1"; WORKDIR="$2"; shift 2
MODE=all
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then MODE="$1"; shift; fi

if [ "${WAT_JAX_SKIP_SETUP:-0}" != 1 ]; then
  source "$ROOT/launch/setup.sh"
fi
PY="${WAT_JAX_PYTHON:-python}"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

source "$ROOT/launch/gpu.sh"

exec "$PY" -m wat_jax.main --config="$CONFIG" --workdir="$WORKDIR" --mode="$MODE" "$@"
