"""The one error type for bad user input, and the one place it becomes an exit.

Library code raises `InputError` with a message that names the file (or config
key) and what is wrong with it. Every command-line entry point wraps its main in
`exits_on_input_error`, which turns it into one `error: ...` line on stderr and
exit status 2. Anything else is a bug and keeps its traceback.
"""

import functools
import os
import sys


class InputError(Exception):
    """Bad input from the user: a file, a config value, a dataset entry."""


def fail(where: object, problem: str) -> InputError:
    """Builds an InputError whose message reads `<where>: <problem>`."""
    return InputError(f"{where}: {problem}")


def exit_with(error: InputError):
    """Prints `error: <message>` on one line of stderr and exits with status 2.

    Files are closed and locks released by the time an error reaches a CLI's main;
    exiting at once (os._exit) keeps background threads (orbax's, for one) from
    printing tracebacks under the one line.
    """
    print("error: " + " ".join(str(error).split()), file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(2)


def _quiet_closed_loop(unraisable) -> None:
    """sys.unraisablehook: drops the late callbacks of reads abandoned on a closed loop.

    When a damaged checkpoint fails to restore, orbax closes its event loop while
    other tensorstore reads of that checkpoint are still in flight; as they finish,
    their callbacks raise "Event loop is closed" from tensorstore's threads, and
    Python would print each with a traceback beside the one error line (or the
    warning of a skipped checkpoint). Any other unraisable exception keeps
    Python's default report.
    """
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
        return
    sys.__unraisablehook__(unraisable)


def exits_on_input_error(main):
    """Decorates a CLI's `main(argv)`: an InputError ends it with `exit_with`."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        sys.unraisablehook = _quiet_closed_loop
        try:
            return main(*args, **kwargs)
        except InputError as e:
            exit_with(e)

    return wrapped
