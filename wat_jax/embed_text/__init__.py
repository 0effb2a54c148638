"""`python -m wat_jax.embed_text`, the contract's name for wat_jax/tools/embed_text.py:

    python -m wat_jax.embed_text --encoder=minilm --input=sentences.txt --output=out.npy

The package holds only its __main__, which runs the tool, so nothing in the library
imports the tools."""
