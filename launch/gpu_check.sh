#!/usr/bin/env bash
# GPU readiness check, for a lent machine with no network (one H200): installs what is
# missing from carried wheels, then times the paper-size train step at batch 256 and 1024
# in float32 and bfloat16 (step time, sequences/s, MFU) and the MiniLM text encoder
# (sentences/s), all inside about 6 minutes. Output: one JSON object per line in
# $OUT/gpu_check.jsonl (or /tmp/gpu_check/), then a table on stdout.
#
#   bash launch/gpu_wheels.sh                 # here, online, once: fills .whl/
#   bash launch/gpu_check.sh                  # there, with .whl carried
#   bash launch/gpu_check.sh --dry_run        # on a CPU: tiny shapes, about a minute
#
# Settings: WAT_JAX_PYTHON (default python3: the image's, which has jax 0.11 with CUDA; a
# dry run defaults to the project's venv, made or reused by launch/setup.sh),
# GPU_CHECK_TOTAL_S (default 345: every run is cut to what is left of it, and a run
# with under 30 s left is skipped), GPU_CHECK_STEPS (default 20 timed steps per run).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry_run) DRY=1 ;;
    *) echo "error: gpu_check.sh: unknown argument $arg (use --dry_run)" >&2; exit 2 ;;
  esac
done
if [ "$DRY" = 1 ] && [ -z "${WAT_JAX_PYTHON:-}" ]; then
  # A CPU dry run uses the project's venv (launch/setup.sh makes or reuses it); on the
  # GPU machine the image's python3 already has jax with CUDA.
  source "$ROOT/launch/setup.sh"
  WAT_JAX_PYTHON=python
fi
PY="${WAT_JAX_PYTHON:-python3}"
TOTAL="${GPU_CHECK_TOTAL_S:-345}"
RESULTS="${OUT:-/tmp/gpu_check}"
mkdir -p "$RESULTS"
LOG="$RESULTS/gpu_check.jsonl"
: >"$LOG"
T0=$(date +%s)
elapsed() { echo $(($(date +%s) - T0)); }
# Seconds the next run may take: its own cap, or what is left of the total.
allowed() { local left=$((TOTAL - $(elapsed))); echo $((left < RUN_TIMEOUT ? left : RUN_TIMEOUT)); }
note() { echo "gpu_check [$(elapsed)s]: $*" >&2; }

# 1. Carried wheels (README of the device tool: --target, never the image's site-packages).
SITE=/tmp/wat_jax_site
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || { echo "error: installing .whl/*.whl failed" >&2; exit 1; }
  export PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"
  note "installed $(ls .whl/*.whl | xargs -n1 basename | tr '\n' ' ')"
else
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  note "no .whl/*.whl: using the interpreter's packages as they are"
fi
ENCODER=minilm
[ -f .whl/minilm-bf16/model.safetensors ] && ENCODER="$ROOT/.whl/minilm-bf16"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-.90}"

if [ "$DRY" = 1 ]; then
  export JAX_PLATFORMS=cpu
  BATCHES="8 16"
  SHAPE=(--config.model.width=64 --config.model.layers=1 --config.model.heads=2 --config.model.mlp_dim=128 --matmul_size=256)
  STEPS=2 WARMUP=1 TEXT=(--batch_size=16 --num_sentences=32 --repeats=1)
  RUN_TIMEOUT=120
else
  BATCHES="256 1024"
  SHAPE=()  # the paper's: 768 wide, 8 layers, 4 heads, MLP 1024, 60 frames x 25 joints x 6
  STEPS="${GPU_CHECK_STEPS:-20}" WARMUP=3 TEXT=(--batch_size=1024 --num_sentences=8192 --repeats=3)
  RUN_TIMEOUT=150
fi

# 2. What the machine is.
nvidia-smi -L 2>/dev/null >&2 || note "nvidia-smi: no GPU listed"
"$PY" - <<'PY' | tee -a "$LOG"
import json, jax, flax, optax
d = jax.devices()[0]
print(json.dumps({"what": "runtime", "jax": jax.__version__, "flax": flax.__version__,
                  "optax": optax.__version__, "backend": jax.default_backend(),
                  "device_kind": d.device_kind, "devices": jax.device_count()}))
PY
[ "${PIPESTATUS[0]}" = 0 ] || { echo "error: jax does not start with these packages" >&2; exit 1; }

# 3. The train step: float32 and bfloat16, batch 256 and 1024 (smaller first).
for dtype in float32 bfloat16; do
  for bs in $BATCHES; do
    if [ "$(allowed)" -lt 30 ]; then
      echo "{\"what\": \"step\", \"dtype\": \"$dtype\", \"batch_size\": $bs, \"skipped\": \"under 30 s left of ${TOTAL} s\"}" | tee -a "$LOG"
      continue
    fi
    note "step dtype=$dtype batch=$bs"
    timeout "$(allowed)" "$PY" -m wat_jax.tools.benchmark --what=step --config.model.dtype="$dtype" \
      --config.batch_size="$bs" --steps="$STEPS" --warmup="$WARMUP" "${SHAPE[@]}" \
      2>"$RESULTS/step_${dtype}_${bs}.stderr" | grep '^{' | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] || echo "{\"what\": \"step\", \"dtype\": \"$dtype\", \"batch_size\": $bs, \"failed\": \"exit $rc\", \"stderr_tail\": $(tail -n 3 "$RESULTS/step_${dtype}_${bs}.stderr" | "$PY" -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}" | tee -a "$LOG"
  done
done

# 4. The text encoder (packed rows), sentences/s.
if [ "$(allowed)" -ge 30 ]; then
  note "text encoder $ENCODER"
  timeout "$(allowed)" "$PY" -m wat_jax.tools.text_bench --encoder="$ENCODER" "${TEXT[@]}" \
    2>"$RESULTS/text.stderr" | grep '^{' | sed 's/^{/{"what": "text", /' | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || echo "{\"what\": \"text\", \"failed\": \"exit $rc\"}" | tee -a "$LOG"
else
  echo "{\"what\": \"text\", \"skipped\": \"under 30 s left of ${TOTAL} s\"}" | tee -a "$LOG"
fi

# 5. The table.
"$PY" - "$LOG" "$(elapsed)" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
fmt = lambda v, f: "-" if v is None else format(v, f)
print(f"gpu_check: {sys.argv[2]} s in all; details in {sys.argv[1]}")
for r in rows:
    if r.get("what") == "runtime":
        print(f"jax {r['jax']} on {r['backend']}: {r['devices']} x {r['device_kind']}")
    if r.get("what") == "machine":
        print(f"matmul {r.get('matmul_dtype')} {r.get('matmul_size')}^3: "
              f"{fmt((r.get('matmul_flops_per_sec') or 0) / 1e12, '.3g')} TFLOP/s")
print(f"{'dtype':<9} {'batch':>6} {'step ms':>9} {'seq/s':>10} {'TFLOP/s':>8} {'MFU':>6} {'of matmul':>9}")
for r in rows:
    if r.get("what") == "step" and r.get("impl", "wat_jax") == "wat_jax":
        if "median_step_s" not in r:
            print(f"{r.get('dtype', '?'):<9} {r.get('batch_size', '?'):>6}  {r.get('skipped') or r.get('failed')}")
            continue
        tf = r.get("achieved_model_flops_per_sec")
        print(f"{r['dtype']:<9} {r['batch_size']:>6} {1e3 * r['median_step_s']:>9.2f} "
              f"{r['sequences_per_sec']:>10.1f} {fmt(tf and tf / 1e12, '.3g'):>8} "
              f"{fmt(r.get('mfu'), '.3f'):>6} {fmt(r.get('fraction_of_matmul_peak'), '.3f'):>9}")
for r in rows:
    if r.get("what") == "text" and "sentences_per_sec" in r:
        print(f"text encoder {r['encoder']}: {r['sentences_per_sec']:.0f} sentences/s "
              f"(batch {r['batch_size']}, {r['num_sentences']} sentences, compile {r['compile_s']:.1f} s)")
PY
