#!/usr/bin/env bash
# The BABEL-60 zero-shot protocol (experiments/zero_shot_splits.json): every split of
# each protocol for the chosen seeds, one `--mode=all` run each, then mean ± std over
# splits and seeds (ROOT/<protocol>/aggregate.md and .json). Offline on the demo:
#   bash launch/zero_shot.sh [ROOT] [SEEDS] [PROTOCOLS]
#     (defaults: ./runs/zero_shot, 10,11, all = the demo's 15/2 and 14/3)
# The real data (BABEL-60's 55/5 and 48/12): set CONFIG and CLASSES, and pass the data
# paths as ZS_OVERRIDES, e.g.
#   CONFIG=experiments/babel60.py:paper CLASSES=babel60 \
#   ZS_OVERRIDES="--config.data.amass_root=/data/amass --config.data.babel_dir=/data/babel" \
#   bash launch/zero_shot.sh runs/zs_paper 0,1,2
# A run that already has an evaluation is kept, so a second call continues.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/launch/setup.sh"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
overrides=()
for o in ${ZS_OVERRIDES:-}; do overrides+=("--override=$o"); done
python -m wat_jax.tools.protocol \
  --config="${CONFIG:-experiments/babel60.py:demo}" --classes="${CLASSES:-demo}" \
  --root="${1:-$ROOT/runs/zero_shot}" --seeds="${2:-10,11}" --protocol="${3:-all}" \
  ${overrides[@]+"${overrides[@]}"}
