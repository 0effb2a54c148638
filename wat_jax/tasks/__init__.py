"""Experiments as tasks: each module turns its config into data, texts and metrics.

A task module provides:
  prepare(config, workdir)          raw data -> DIR/data/<split>/ (prepared.py format)
  describe(config, workdir)         keys -> DIR/descriptions.jsonl
  embed(config, workdir)            texts -> DIR/text_bank.npz
  train_batcher(config, workdir, rows) -> data.pipeline.Batcher over the train split
  evaluate(config, workdir, embed_motion, step) -> metrics dict for eval/step_<N>.json
"""

import importlib

TASKS = ("toy", "babel60", "densegait")


def get_task(name: str):
    if name not in TASKS:
        raise ValueError(f"config.task must be one of {TASKS}, got {name!r}")
    return importlib.import_module(f"wat_jax.tasks.{name}")
