#!/usr/bin/env bash
# The embedded default, offline on a laptop CPU: both experiments end to end
# (synthetic data in the real formats -> descriptions -> MiniLM text vectors ->
# training -> evaluation from the checkpoint), then their results tables.
#   bash launch/demo.sh [RUNS_DIR]        (default: ./runs)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/launch/setup.sh"
cd "$ROOT"
RUNS="${1:-$ROOT/runs}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
for exp in babel60 densegait; do
  echo "== $exp demo: $RUNS/$exp" >&2
  start=$(date +%s)
  python -m wat_jax.main --config="experiments/$exp.py:demo" --workdir="$RUNS/$exp" --mode=all \
    --alsologtostderr=false --stderrthreshold=info 2> >(grep -E "stage |train: |describe|error|Error" >&2)
  echo "== $exp demo took $(( $(date +%s) - start )) s" >&2
done
