"""Command line: ``python -m sflib <command> ...``, one command per pipeline stage.

Each stage module provides ``add_cli(subparsers)`` which registers its command(s) and sets
``func`` to a function taking the parsed arguments.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# modules that register commands, in pipeline order; a module that is absent is skipped
STAGE_MODULES = [
    "sflib.io.convert_original", "sflib.generation.generate", "sflib.feedback.ratings", "sflib.feedback.rankings", "sflib.consistency",
    "sflib.rm", "sflib.bon", "sflib.evaluation", "sflib.study.cli",
]


#: commands whose module alone is imported when they are run (``study plan`` / ``status`` must not wait
#: for torch and transformers, which the reward-model commands import: seconds on a loaded machine)
COMMAND_MODULES = {"study": "sflib.study.cli"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sflib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in [COMMAND_MODULES[command]] if command in COMMAND_MODULES else STAGE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        if hasattr(module, "add_cli"):
            module.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .core.data import DataError
    from .study.folder import StudyError

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (DataError, FileNotFoundError, ValueError, StudyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
