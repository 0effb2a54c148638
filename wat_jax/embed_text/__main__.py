# `python -m wat_jax.embed_text`: runs wat_jax/tools/embed_text.py.
from wat_jax.tools import embed_text

__doc__ = embed_text.__doc__  # absl's --help prints the __main__ module's docstring
embed_text.run()
