#!/usr/bin/env bash
# Throughput benchmark: the paper-size train step (and, with --compare=torch,
# the PyTorch reference in the same run), the text encoder, the data pipeline.
# One JSON object per line on stdout; see wat_jax/tools/benchmark.py for the keys.
#
#   bash launch/bench.sh [--config=experiments/babel60.py:paper] [--what=step,text,data] \
#     [--config.batch_size=80] [--config.model.dtype=bfloat16] [--steps=N] [--compare=torch]
#
# Example (the figures in WORKSPACE.md, 2-core CPU):
#   bash launch/bench.sh --what=step,data --steps=12 --block=2 --compare=torch
#
# torch is never installed into the project venv: with --compare=torch this
# script makes (or reuses) a separate one, $BENCH_VENV (default /tmp/bench-venv),
# with the project's requirements (launch/setup.sh) plus torch==2.13.0. On Python 3.11
# pip takes the CPU build of torch from this machine's disk; on 3.12 PyPI has only the
# CUDA build (a venv of 5.9 GB against 2.2 GB; it runs on the CPU just the same).
#
# Settings that matter: on a GPU host launch/gpu.sh installs jax's CUDA backend
# when missing and sets XLA_PYTHON_CLIENT_MEM_FRACTION and XLA_FLAGS (see its header).
#   torch threads are set to the machine's cores by the benchmark (reported).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
torch=0
[[ " $* " == *" --compare=torch "* ]] && torch=1
if [ "$torch" = 1 ]; then
  export WAT_JAX_VENV="${BENCH_VENV:-/tmp/bench-venv}"
fi
source "$ROOT/launch/setup.sh"
if [ "$torch" = 1 ] && ! python -c "import torch, sentence_transformers" 2>/dev/null; then
  # sentence-transformers is the text tower's reference (wat_jax.tools.text_bench --compare=torch).
  echo "bench: installing torch==2.13.0 and sentence-transformers into $WAT_JAX_VENV" >&2
  python -m pip install -q "torch==2.13.0" "sentence-transformers==6.2.0"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
source "$ROOT/launch/gpu.sh"
exec python -m wat_jax.tools.benchmark "$@"
