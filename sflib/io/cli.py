"""The input options every stage command shares: ``--input FILE`` and ``--split NAME``.

A command registers them with :func:`add_input_options` and reads its input with
:func:`read_input`, so every command accepts the same files (JSON, JSON Lines, CSV, Parquet, a
saved ``datasets`` folder with ``--split``) and reports a bad file the same way::

    p = sub.add_parser("rate")
    add_input_options(p, help="responses to rate")
    ...
    responses = read_input(args, "responses")
"""
from __future__ import annotations

import argparse

import pandas as pd

from .tables import KINDS, read

FORMATS_HELP = ("JSON, JSON Lines, CSV, Parquet, or a folder saved with datasets' save_to_disk "
                "(the format is read from the content)")


def add_input_options(parser: argparse.ArgumentParser, *, flag: str = "--input", required: bool = True,
                      help: str | None = None) -> None:
    """Add ``flag`` (the input file or dataset folder) and ``--split`` to ``parser``."""
    parser.add_argument(flag, required=required, metavar="PATH",
                        help=(help + ": " if help else "") + FORMATS_HELP)
    parser.add_argument("--split", default=None, metavar="NAME",
                        help="split of a saved DatasetDict folder (default: train; required when there is no train split)")


def read_input(args: argparse.Namespace, kind: str, *, flag: str = "--input", **kwargs) -> pd.DataFrame:
    """The table of ``kind`` (see :data:`sflib.io.tables.KINDS`) named by ``args.<flag>`` and ``args.split``."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of table {kind!r}; choose one of: {', '.join(KINDS)}")
    path = getattr(args, flag.lstrip("-").replace("-", "_"))
    return read(kind, path, split=getattr(args, "split", None), **kwargs)
