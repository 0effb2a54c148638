"""The one error type for bad user input, and the one place it becomes an exit.

Library code raises `InputError` with a message that names the file (or config
key) and what is wrong with it. Every command-line entry point wraps its main in
`exits_on_input_error`, which turns it into one `error: ...` line on stderr and
exit status 2. Anything else is a bug and keeps its traceback.

Two faults are not the user's input but get the same treatment, one way for every
writer and every CLI:
- A disk that is full, over quota or read-only (ENOSPC, EDQUOT, EROFS) is a
  `DiskError`: `<path>: could not write it: <problem>; <what was kept>; <what to do>`,
  exit 2. wat_jax/fileio.py raises it for every file it writes; blocks wrapped in
  `keeping(...)` add what they leave in place; an OSError of this kind from any other
  writer (a library's, say) becomes the same line at the CLI, naming its file when the
  error does.
- Ctrl-C (KeyboardInterrupt) ends a CLI with `interrupted: <what was kept>` and exit
  130 (128 + SIGINT, what a shell reports), again with what the `keeping` blocks it
  passed through said they leave. Training saves on the first Ctrl-C by itself
  (train.py); a second one arrives here.
"""

import contextlib
import errno
import functools
import os
import sys


class InputError(Exception):
    """Bad input from the user: a file, a config value, a dataset entry."""


def fail(where: object, problem: str) -> InputError:
    """Builds an InputError whose message reads `<where>: <problem>`."""
    return InputError(f"{where}: {problem}")


# errno -> (what the disk did, what to do about it)
DISK_FAULTS = {
    errno.ENOSPC: (
        "the disk is full (no space left on device)",
        "free some space there and run again",
    ),
    errno.EDQUOT: (
        "the disk quota is used up (disk quota exceeded)",
        "free some space or raise the quota, then run again",
    ),
    errno.EROFS: (
        "the file system is read-only",
        "run it where that folder is writable, or write to another folder",
    ),
}
_STRERRORS = {os.strerror(code): code for code in DISK_FAULTS}
INTERRUPTED_EXIT = 130
_KEEP_DEFAULT = "stopped; the files written before are complete (every file is written whole)"


def _disk_cause(error: BaseException | None) -> tuple[int | None, str | None]:
    """(errno, file) of the full, over-quota or read-only disk behind `error` or any
    exception it came from (libraries such as orbax wrap the OSError of their writer
    threads, or only repeat its text); (None, None) when there is none."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_FAULTS:
            return error.errno, error.filename
        if not isinstance(error, InputError):  # ours already say what happened
            for text, code in _STRERRORS.items():
                if text in str(error):
                    return code, None
        error = error.__cause__ or error.__context__
    return None, None


def disk_fault(error: BaseException | None) -> int | None:
    """The errno (ENOSPC, EDQUOT or EROFS) behind `error`, else None (see _disk_cause)."""
    return _disk_cause(error)[0]


class DiskError(InputError, OSError):
    """A write the disk refused: full, over quota, or read-only.

    It is an InputError (one line, exit 2, at the CLI) and still an OSError with its
    errno, so code that survives a failed write on purpose (the text-embedding cache:
    a full disk costs speed there, not the result) keeps working. `kept` lists what
    is left in place, innermost first; `keeping` blocks add to it as it passes.
    """

    def __init__(self, path: str | None, code: int, kept=(), fix: str | None = None):
        OSError.__init__(self, code, os.strerror(code), path)
        self.path, self.kept = path, [k for k in kept if k]
        self.fix = fix or DISK_FAULTS[code][1]

    def keep(self, note: str) -> None:
        if note and note not in self.kept:
            self.kept.append(note)

    def __str__(self) -> str:
        where = f"{self.path}: could not write it" if self.path else "could not write a file"
        return "; ".join([f"{where}: {DISK_FAULTS[self.errno][0]}", *self.kept, self.fix])


def disk_error(
    error: BaseException, path: str | None = None, kept=(), fix: str | None = None
) -> DiskError | None:
    """`error` as a DiskError naming `path` (else the error's own file) when a full,
    over-quota or read-only disk is behind it; None for any other error."""
    if isinstance(error, DiskError):
        error.path = error.path or path
        for note in kept:
            error.keep(note)
        return error
    if isinstance(error, InputError):
        return None
    code, filename = _disk_cause(error)
    if code is None:
        return None
    return DiskError(path or filename, code, kept, fix)


def _text(note) -> str:
    return note() if callable(note) else note


@contextlib.contextmanager
def keeping(note, where: str | None = None):
    """Says what the block leaves in place when it stops early.

    A KeyboardInterrupt or a disk fault raised inside carries `note` (a string, or a
    function called then, for counts that change as the block runs) up to the CLI's
    one line; blocks nest, innermost first. `where` names the file for a disk fault
    whose OSError names none (a buffered write failing on close).
    """
    try:
        yield
    except KeyboardInterrupt as e:
        notes = getattr(e, "kept", [])
        e.kept = notes + [n for n in [_text(note)] if n and n not in notes]
        raise
    except Exception as e:  # only disk faults are changed; the rest re-raised
        error = disk_error(e, where, [_text(note)])
        if error is None or error is e:
            raise
        raise error from e


def interrupted_line(error: KeyboardInterrupt) -> str:
    """`interrupted: <what was kept>` for a Ctrl-C that reached a CLI."""
    why = " ".join(str(error).split())
    kept = "; ".join(getattr(error, "kept", [])) or _KEEP_DEFAULT
    return f"interrupted{f' ({why})' if why else ''}: {kept}"


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


def exit_interrupted(error: KeyboardInterrupt):
    """Prints `interrupted: <what was kept>` on one line of stderr and exits with 130."""
    print(interrupted_line(error), file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED_EXIT)


def exits_on_input_error(main):
    """Decorates a CLI's `main(argv)`: an InputError, or an OSError of a full, over-quota
    or read-only disk, ends it with `exit_with` (exit 2); Ctrl-C with `exit_interrupted`
    (exit 130). Files are closed and locks released on the way out, by the `with` blocks
    the exception passed through."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        sys.unraisablehook = _quiet_closed_loop
        try:
            return main(*args, **kwargs)
        except InputError as e:
            exit_with(e)
        except KeyboardInterrupt as e:
            exit_interrupted(e)
        except Exception as e:  # a disk fault: one line; the rest re-raised
            error = disk_error(e)
            if error is None:
                raise
            exit_with(error)

    return wrapped
