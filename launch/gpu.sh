#!/usr/bin/env bash
# Sourced (after setup.sh) by the launchers that train or time on accelerators:
# single_host.sh, slurm.sh and bench.sh. On a host with NVIDIA GPUs it makes sure
# jax has its CUDA backend and sets the XLA settings that matter; on a host without
# GPUs it does nothing.
#
#   WAT_JAX_JAX_EXTRA     jax extra installed when jax has no CUDA backend yet
#                         (default cuda13, matching the pinned jax version; "none" skips)
#   WAT_JAX_SKIP_SETUP=1  never install: use the current environment as it is
#   WAT_JAX_PYTHON        the interpreter (setup.sh sets it to the venv's python; default:
#                         python on PATH)
#   XLA_PYTHON_CLIENT_MEM_FRACTION  share of GPU memory JAX preallocates (JAX's
#                         default .75; .90 unless set, the host runs nothing else)
#   XLA_FLAGS             --xla_gpu_enable_latency_hiding_scheduler=true is added after
#                         what is already there: it overlaps the gradient all-reduce
#                         with the backward pass
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  _wat_py="${WAT_JAX_PYTHON:-python}"
  _wat_extra="${WAT_JAX_JAX_EXTRA:-cuda13}"
  if [ "${WAT_JAX_SKIP_SETUP:-0}" != 1 ] && [ "$_wat_extra" != none ] \
    && ! "$_wat_py" -c "import jax; assert jax.default_backend() == 'gpu'" 2>/dev/null; then
    _wat_version="$("$_wat_py" -c 'import jax; print(jax.__version__)')"
    echo "launch: installing jax[$_wat_extra]==$_wat_version for the GPUs" >&2
    "$_wat_py" -m pip install -q "jax[$_wat_extra]==$_wat_version"
  fi
  export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-.90}"
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
  unset _wat_py _wat_extra _wat_version
fi
