#!/usr/bin/env bash
# Runs the test suite on CPU with 8 simulated devices (tests/conftest.py sets them).
#   bash launch/test.sh [pytest args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/launch/setup.sh"
cd "$ROOT"
export JAX_PLATFORMS=cpu HF_HUB_OFFLINE=1
# With test paths among the arguments only those run; otherwise the whole suite.
targets=(tests)
for arg in "$@"; do
  case "$arg" in tests/*|./tests/*) targets=() ;; esac
done
exec python -m pytest -q -p no:cacheprovider "${targets[@]}" "$@"
