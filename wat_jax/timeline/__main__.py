# `python -m wat_jax.timeline`: the contract's name for the timeline's command line
# (wat_jax/tools/timeline.py). A package's __main__, so the library module
# (wat_jax/timeline/__init__.py) never imports the tools.
from wat_jax.tools import timeline as timeline_cli

__doc__ = timeline_cli.__doc__  # absl's --help prints the __main__ module's docstring
timeline_cli.run()
