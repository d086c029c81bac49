"""``python -m sflib consistency --ratings R --rankings K [--json OUT]``: how often ratings and rankings agree.

Reads both tables (the original headerless CSVs or any table the feedback stages write), prints the
report of :func:`sflib.consistency.report` and optionally writes it as JSON. Exit status as every
stage command (:mod:`sflib.io.outputs`): 1 for a bad input, and 3 (nothing written to ``--json``,
a previous report kept) when no pair could be compared.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings

import numpy as np
import pandas as pd

from ..core import data
from ..io.outputs import INCOMPLETE, remove_stale_partial
from ..feedback.soft_verdicts import VERDICTS
from . import ConsistencyWarning, load_rankings, load_ratings, report
from .report import RESAMPLE


def _run_cli(args: argparse.Namespace) -> int:
    ratings = load_ratings(args.ratings)
    rankings = load_rankings(args.rankings)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConsistencyWarning)
        rep = report(ratings, rankings, bootstrap=args.bootstrap, seed=args.seed, resample=args.resample,
                     ratings_name=str(args.ratings), rankings_name=str(args.rankings), verdicts=args.verdicts)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if rep.n_compared == 0:
        print(f"incomplete: no pair could be compared (no ranked pair has a valid rating of both responses); "
              f"{'the previous ' + str(args.json) + ' is kept' if args.json else 'nothing written'}", file=sys.stderr)
        return INCOMPLETE
    with pd.option_context("display.width", 120, "display.max_columns", 20, "display.float_format", "{:.4f}".format):
        print(rep.headline())
        for note in rep.notes:
            print(f"note: {note}")
        print("(the paper reports ~60% disagreement)\n")
        print(rep.summary().to_string(), "\n")
        print("agreement matrix (counts):")
        print(rep.matrix.to_string(), "\n")
        print("row-normalised:")
        print(rep.matrix_normalised.round(3).to_string(), "\n")
        print("by rating gap |score1 - score2|:")
        print(rep.by_gap.to_string(index=False))
        if rep.by_source is not None:
            print("\nby source:")
            print(rep.by_source.to_string(index=False))
    if args.json:
        data.atomic_write_text(args.json, json.dumps(rep.to_dict(), indent=1, default=_json_default))
        print(f"\nwrote {args.json}")
        remove_stale_partial(args.json)
    return 0


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def add_cli(subparsers) -> None:
    """Register ``python -m sflib consistency --ratings R --rankings K [--json OUT]``."""
    p = subparsers.add_parser("consistency", help="how often ratings and rankings feedback agree",
                              description="Compare ratings-implied preferences with rankings decisions "
                                          "(original headerless CSVs or canonical .jsonl/.parquet tables).")
    p.add_argument("--ratings", required=True, help="ratings: the headerless CSV instruction,input,output,score or "
                                                    "any table the ratings stage writes (JSON, JSON Lines, CSV, "
                                                    "Parquet; the format is read from the content)")
    p.add_argument("--rankings", required=True,
                   help="rankings: the headerless CSV instruction,input,output1,output2,feedback or any table the "
                        "rankings stage writes (JSON, JSON Lines, CSV, Parquet)")
    p.add_argument("--json", default=None, help="also write the report as JSON here")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs (0 = none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resample", choices=RESAMPLE, default="pairs",
                   help="bootstrap unit for the overall CIs: pairs (default) or whole instructions")
    p.add_argument("--verdicts", choices=VERDICTS, default="hard",
                   help="hard: score / decision; soft: expected_score / p_a where the judge stored them "
                        "(falls back to hard, with a note, where they are missing)")
    p.set_defaults(func=_run_cli)
