"""``igikit``: one entry point for every workflow.

Each command lives beside the code it drives, in a module with a ``register(subparsers)`` function
that adds its parser and sets ``func`` (``args -> exit code``). This file only assembles them and
turns errors into the public contract: one line on stderr, exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from igikit import __version__
from igikit.errors import IgikitError

#: Modules that contribute commands, in the order ``igikit --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "igikit.io.commands",
    "igikit.io.igtl_commands",
    "igikit.io.pacs_commands",
    "igikit.stream.commands",
    "igikit.supervise.commands",
    "igikit.console.commands",
    "igikit.workflows.mrgrt.track_command",
    "igikit.workflows.mrgrt.commands",
    "igikit.sim.commands",
    "igikit.workflows.fus.commands",
    "igikit.workflows.surgery.commands",
    "igikit.workflows.surgery.navigate_command",
    "igikit.workflows.theranostics.commands",
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other input error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full ``igikit`` parser with every registered command."""
    parser = _Parser(prog="igikit", description="Image-guided interventions under human supervision.")
    parser.add_argument("--version", action="version", version=f"igikit {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``igikit`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = args.func(args)
    except IgikitError as exc:
        print(f"igikit {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except FileNotFoundError as exc:
        print(f"igikit {args.command}: error: {exc.filename}: file not found", file=sys.stderr)
        return EXIT_INPUT
    except (IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        print(f"igikit {args.command}: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print(f"igikit {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an igikit bug, not a user error: one line unless debugging
        if os.environ.get("IGIKIT_DEBUG"):
            raise
        print(
            f"igikit {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(set IGIKIT_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
