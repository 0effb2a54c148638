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
  # The log, filtered to what a person follows: stages, progress lines (rate and ETA:
  # prepare, describe, the text encoder, embedding windows), training's compile note and
  # steps, the report, and errors. --line-buffered: each line shows when it is written.
  python -m wat_jax.main --config="experiments/$exp.py:demo" --workdir="$RUNS/$exp" --mode=all \
    --alsologtostderr=false --stderrthreshold=info \
    2> >(grep --line-buffered -E "stage |train: |describe|, ETA |report|error|Error" >&2)
  echo "== $exp demo took $(( $(date +%s) - start )) s" >&2
done
