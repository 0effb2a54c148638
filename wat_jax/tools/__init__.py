"""Command-line tools around a run, beside the one training entry point (wat_jax.main).

Each module is `python -m wat_jax.tools.<name>`; its main is wrapped in
`wat_jax.errors.exits_on_input_error`, so bad input is one `error:` line and exit 2.
"""
