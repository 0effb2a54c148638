#!/usr/bin/env bash
# Runs the test suite on CPU with 8 simulated devices (tests/conftest.py sets them).
#   bash launch/test.sh [pytest args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/launch/setup.sh"
cd "$ROOT"
export JAX_PLATFORMS=cpu HF_HUB_OFFLINE=1
exec python -m pytest -q -p no:cacheprovider tests "$@"
