"""The ``recon`` command: reconstruct, simulate, batch, benchmark, validate, score, train, sample, pacs, demo.

Each subcommand lives in a ``pipelines`` module exposing ``register(subparsers)``; the module adds
its parser and sets ``func=run`` with ``run(args) -> int``. Bad input ends with one line naming the
file and the problem and a non-zero exit; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from operators.cpu import add_threads_argument, apply_thread_budget
from pipelines import batch, benchmark, demo, pacs, reconstruct_dir, sample, score, simulate, train, validate
from recon.errors import InputError, one_line

# Subcommand modules, in the order ``recon --help`` lists them.
SUBCOMMAND_MODULES: tuple[ModuleType, ...] = (reconstruct_dir, simulate, batch, benchmark, validate, score, train, sample,
                                              pacs, demo)

EXIT_INPUT_ERROR = 2
EXIT_INTERRUPTED = 130


def version() -> str:
    """The installed package's version (``0+unknown`` in a source tree that is not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("recon-diffusion")
    except PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    """The ``recon`` parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="recon",
        description="Reconstruct CT and MRI from reduced measurements with score-based diffusion priors.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMAND_MODULES:
        module.register(sub)
    for command in sub.choices.values():
        if not any(action.dest == "threads" for action in command._actions):  # train declares its own
            add_threads_argument(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``recon`` with ``argv`` (default: the command line); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_INPUT_ERROR
    try:
        apply_thread_budget(args.threads)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("recon: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (InputError, ValueError, FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError) as err:
        if args.debug:
            raise
        print(f"recon: error: {one_line(err)}", file=sys.stderr)
        return EXIT_INPUT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
