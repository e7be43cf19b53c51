"""The ``assimilax`` command.  Subcommands come from installed adapters.

The core knows no model: an adapter registers a subcommand through the entry-point group
``assimilax.commands``, whose value is a function ``register(subparsers)`` that adds one
`argparse` sub-parser and sets its ``func`` default to ``func(args) -> int``.
"""

import argparse
import sys
from importlib.metadata import entry_points

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every installed adapter's subcommand."""
    parser = argparse.ArgumentParser(
        prog="assimilax",
        description="Training-free data assimilation with pre-trained diffusion emulators.",
    )
    parser.add_argument("--version", action="version", version=f"assimilax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in sorted(entry_points(group="assimilax.commands"), key=lambda e: e.name):
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``assimilax`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
