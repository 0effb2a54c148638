"""Test setup: 8 simulated CPU devices, set once before JAX initialises."""

import os
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Text vectors are cached per session, never in the user's ~/.cache.
os.environ["WAT_JAX_CACHE"] = tempfile.mkdtemp(prefix="wat_jax_test_cache_")
