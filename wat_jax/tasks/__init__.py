"""Experiments as tasks: each module defines one Task (wat_jax/tasks/base.py) as `TASK`.

  toy        in-memory data and generated text vectors (tests, experiments/toy.py)
  babel60    BABEL-60 action recognition as nearest class text; the action timeline
  densegait  DenseGait text-to-gait retrieval by appearance

`get_task(config.task)` is how the rest of the library reaches what only a task
knows (its data, texts, metrics and pictures); see Task for the interface.
"""

import importlib

from wat_jax.tasks.base import Task

TASKS = ("toy", "babel60", "densegait")


def get_task(name: str) -> Task:
    """The Task of config.task."""
    if name not in TASKS:
        raise ValueError(f"config.task must be one of {TASKS}, got {name!r}")
    return importlib.import_module(f"wat_jax.tasks.{name}").TASK
