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
# Settings that matter (export them before calling to override):
#   XLA_PYTHON_CLIENT_MEM_FRACTION  share of GPU memory JAX preallocates (JAX's
#                                   default .75; .90 here, the host runs nothing else)
#   XLA_FLAGS  on GPU adds --xla_gpu_enable_latency_hiding_scheduler=true, which
#              overlaps the gradient all-reduce with the backward pass; anything
#              already in XLA_FLAGS is kept and comes first
#   WAT_JAX_SKIP_SETUP=1  use the current environment instead of launch/setup.sh
#   WAT_JAX_PYTHON        the interpreter (default: python from the venv)
#   WAT_JAX_JAX_EXTRA     the jax extra installed on a GPU host whose jax has no
#                         CUDA plugin yet (default cuda13; "none" skips)
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

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  extra="${WAT_JAX_JAX_EXTRA:-cuda13}"
  if [ "$extra" != none ] && ! "$PY" -c "import jax; assert jax.default_backend() == 'gpu'" 2>/dev/null; then
    version="$("$PY" -c 'import jax; print(jax.__version__)')"
    echo "single_host: installing jax[$extra]==$version for the GPUs" >&2
    "$PY" -m pip install -q "jax[$extra]==$version"
  fi
  export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-.90}"
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
fi

exec "$PY" -m wat_jax.main --config="$CONFIG" --workdir="$WORKDIR" --mode="$MODE" "$@"
