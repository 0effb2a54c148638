"""Command-line tools around a run, beside the one training entry point (wat_jax.main).

  search      text -> gallery windows, window -> texts, over the gallery index
  export      jax.export of the motion tower, and its jax + numpy loader
  visualize   one window as a skeleton GIF
  timeline    one motion's action timeline (`python -m wat_jax.timeline`)
  embed_text  one sentence per line -> vectors (`python -m wat_jax.embed_text`)
  benchmark   step / data / text throughput and MFU; bench_torch its PyTorch reference
  text_bench  the text encoder's sentences/s; llm_bench the local LLM's tokens/s

Each is `python -m wat_jax.tools.<name>`; its main is wrapped in
`wat_jax.errors.exits_on_input_error`, so bad input is one `error:` line and exit 2.
These modules are leaves: they import the library, nothing in the library imports
them (tests/test_skeletons.py checks it).
"""
