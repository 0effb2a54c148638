"""The one error type for bad user input.

Library code raises `InputError` with a message that names the file (or config
key) and what is wrong with it; `wat_jax.main` and the other CLIs turn it into
one line on stderr and a non-zero exit. Anything else is a bug and keeps its
traceback.
"""


class InputError(Exception):
    """Bad input from the user: a file, a config value, a dataset entry."""


def fail(where: object, problem: str) -> InputError:
    """Builds an InputError whose message reads `<where>: <problem>`."""
    return InputError(f"{where}: {problem}")
