"""The ``assimilax`` command.  Subcommands come from installed adapters.

The core knows no model: an adapter registers a subcommand through the entry-point group
``assimilax.commands``, whose value is a function ``register(subparsers)`` that adds one
`argparse` sub-parser and sets its ``func`` default to ``func(args) -> int``.

A user never sees a traceback: every error is one line on stderr naming the option, file
or filter and the cause.  Exit status 0 for success, 2 for bad input (usage, options,
files, checkpoints of another run), 1 for a run that failed (a filter whose analysis
turned non-finite, a full disk) and 130 for an interrupt; ``--debug`` shows the traceback.
"""

import argparse
import errno
import sys
from importlib.metadata import entry_points

from . import __version__
from .errors import AssimilaxError, CheckpointError, InvalidArgument, InvalidData, NonFiniteError, RunFailed

USAGE, FAILED = 2, 1


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every installed adapter's subcommand."""
    parser = argparse.ArgumentParser(
        prog="assimilax",
        description="Training-free data assimilation with pre-trained diffusion emulators.",
    )
    parser.add_argument("--version", action="version", version=f"assimilax {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in sorted(entry_points(group="assimilax.commands"), key=lambda e: e.name):
        ep.load()(sub)
    return parser


def describe_error(error: BaseException) -> tuple[str, int]:
    """The one-line message and exit status of an error raised by a job."""
    if isinstance(error, RunFailed | NonFiniteError):
        return str(error), FAILED
    if isinstance(error, InvalidArgument | InvalidData | CheckpointError):
        return str(error), USAGE
    if isinstance(error, AssimilaxError):
        return str(error), FAILED
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        cause = error.strerror or str(error)
        usage = isinstance(error, FileNotFoundError | NotADirectoryError | IsADirectoryError | PermissionError | FileExistsError)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            cause += " (the checkpoints keep the cycles done; free space and rerun the same command)"
        return f"{where}{cause}", USAGE if usage else FAILED
    if isinstance(error, ImportError):
        return f"{error} (install the missing package)", USAGE
    if isinstance(error, MemoryError):
        return "out of memory (fewer particles, --chunk-size, or more devices)", FAILED
    if isinstance(error, ValueError | TypeError | KeyError):  # raised by a library below us
        return f"{type(error).__name__}: {error}", USAGE
    return f"internal error, {type(error).__name__}: {error} (rerun with --debug for the traceback and report it)", FAILED


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``assimilax`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return USAGE
    prog = f"assimilax {args.command}"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; the checkpoints keep the cycles done (rerun to resume).", file=sys.stderr)
        return 130
    except Exception as error:  # every failure is one line; --debug shows the traceback
        if args.debug:
            raise
        message, status = describe_error(error)
        print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
