"""wat_jax: aligning human motion with LLM-written text, in JAX/Flax."""
