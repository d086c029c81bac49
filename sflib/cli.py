"""Command line: ``python -m sflib <command> ...``, one command per pipeline stage.

Each stage package provides ``add_cli(subparsers)`` (in its ``cli`` module) which registers its
command(s) and sets ``func`` to a function taking the parsed arguments. Every command follows one
exit-code contract (:mod:`sflib.io.outputs`): 0 complete, 3 incomplete (a ``.partial`` output and
one line on what is left), 1 bad input (one line naming the file, row and field), 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sqlite3
import sys
from pathlib import Path

# modules that register commands, in pipeline order; a module that is absent is skipped
STAGE_MODULES = [
    "sflib.io.convert_original", "sflib.generation.cli", "sflib.feedback.cli", "sflib.consistency.cli",
    "sflib.rm.cli", "sflib.bon.cli", "sflib.evaluation.cli", "sflib.study.cli",
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


# ----------------------------------------------------------------------------- progress for the Ctrl-C line

def _store_files(args) -> list[Path]:
    """Where a command stores its answers as they arrive: the annotation store (SQLite) and, for
    ``generate`` with a local model, the sample files (JSON Lines) under ``<outputs>/generations``."""
    if not hasattr(args, "store") or getattr(args, "no_store", False):
        return []
    from .core.paths import outputs_dir

    if args.store:
        return [Path(args.store)]
    found = [outputs_dir() / "annotations.sqlite"]
    if args.command == "generate":  # a local model's samples go to a file named by the run's parameters
        found += sorted((outputs_dir() / "generations").glob("*.jsonl"))
    return found


def _count(path: Path) -> tuple[int, int]:
    """``(answers stored, requests in flight)`` in one store file (0, 0 when it is absent or unreadable)."""
    if not path.is_file():
        return 0, 0
    try:
        if path.suffix == ".jsonl":
            with open(path, "rb") as f:
                return sum(1 for _ in f), 0
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            stored = con.execute("SELECT COUNT(*) FROM annotations").fetchone()[0]
            try:
                flying = con.execute("SELECT COUNT(*) FROM in_flight").fetchone()[0]
            except sqlite3.Error:
                flying = 0
            return int(stored), int(flying)
        finally:
            con.close()
    except (OSError, sqlite3.Error):
        return 0, 0


def _stored(args) -> dict[Path, tuple[int, int]]:
    return {path: _count(path) for path in _store_files(args)}


def interrupted_line(args, before: dict[Path, tuple[int, int]]) -> str:
    """``interrupted: N stored, M in flight, re-run to finish``: N answers this run stored (they are
    kept: the next run reuses them), M requests it had sent without an answer (the next run asks again)."""
    if getattr(args, "command", None) == "train-rm":
        return _interrupted_training(args)
    now = _stored(args)
    stored = sum(max(n - before.get(p, (0, 0))[0], 0) for p, (n, _) in now.items())
    flying = sum(m for _, m in now.values())
    where = [str(p) for p, (n, m) in now.items() if n - before.get(p, (0, 0))[0] > 0 or m]
    return f"interrupted: {stored} stored{' in ' + ', '.join(where) if where else ''}, {flying} in flight, re-run to finish"


def _interrupted_training(args) -> str:
    """``interrupted: the last checkpoint is step N (folder); re-run with --resume latest ...``."""
    from .rm.training import complete_checkpoints

    out = getattr(args, "output", None)
    found = complete_checkpoints(Path(out) / "checkpoints") if out else []  # one cut off mid-save is not named
    where = (f"the last checkpoint is step {found[-1].name.split('-')[-1]} ({found[-1]})" if found
             else "no checkpoint was written yet (one is saved every epoch)")
    return f"interrupted: {where}; re-run with --resume latest to go on from the last checkpoint"


def _close_progress_bars() -> None:
    """Close the progress bars still open (the Trainer's, tqdm's) so that they do not print again after the
    interrupted line, which must stay the last line."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return
    for bar in list(getattr(tqdm, "_instances", [])):
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - a bar half torn down: nothing to print
            pass


# ----------------------------------------------------------------------------- main

def _one_line(e: BaseException) -> str:
    return " ".join(part.strip() for part in str(e).splitlines() if part.strip())


def main(argv: list[str] | None = None) -> int:
    from .core.data import DataError
    from .io.outputs import BAD_INPUT, INCOMPLETE, INTERRUPTED, Incomplete
    from .study.folder import StudyError

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    before = _stored(args)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        # no traceback; the second Ctrl-C during the report is ignored
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _close_progress_bars()
        sys.stderr.write(interrupted_line(args, before) + "\n")
        sys.stderr.flush()
        return INTERRUPTED
    except Incomplete as e:
        print(_one_line(e), file=sys.stderr)
        return INCOMPLETE
    except (DataError, FileNotFoundError, ValueError, StudyError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return BAD_INPUT


def run_main() -> None:
    """The ``python -m sflib`` entry point: :func:`main`, exiting with its status (130 on Ctrl-C)."""
    code = main()
    sys.stdout.flush()
    if code == 130:
        os._exit(130)  # do not wait for (or print tracebacks of) worker threads a Ctrl-C left behind
    raise SystemExit(code)
