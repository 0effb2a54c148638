#!/usr/bin/env bash
# How each stage grows with the dataset: time and peak memory per stage per size.
# One JSON object per stage and size, then a table; see wat_jax/tools/scale.py.
#
#   bash launch/scale.sh --task=densegait --sizes=2500,25000 --out=scale.jsonl
#   bash launch/scale.sh --task=babel60 --sizes=280,1400
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source "$ROOT/launch/setup.sh"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
exec python -m wat_jax.tools.scale "$@"
