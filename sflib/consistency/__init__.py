"""Stage 04 — consistency: how often do ratings and rankings feedback agree on the same pair?

For every ranked pair ``(response1, response2)`` whose two responses both have a rating, the ratings
imply a preference — ``a`` if score1 > score2, ``b`` if score1 < score2, ``equal`` if the scores are
equal — and the pair's rankings decision is compared with it. *Consistency* is the share of compared
pairs where the two agree (the paper: they disagree about 60% of the time).

The definition is that of the original consistency script, made explicit:

- a response is identified by its instruction + input + text (here: the ``instruction_id`` and
  ``response_id`` hashes of :mod:`sflib.core.data`, so the lookup is a vectorised join, not a row loop);
- **duplicate rows count once, the first occurrence wins**: a response rated twice keeps its first
  score (the vendored sample has two such responses, rated 6 then 5 and 5 then 4), and a pair ranked
  twice in the same order keeps its first decision. ``(r1, r2)`` and ``(r2, r1)`` are different rows;
- a pair is **skipped** when either response has no (valid) rating; skipped pairs are counted
  (``n_skipped_missing_rating``; ``n_skipped_invalid_rating`` of them because the response's
  rating is stored invalid) and a warning names one of them; ratings with no valid score
  (an unparsable judge reply stored as NaN) count as missing and are set aside *before* the first
  occurrence is picked (a failed first attempt does not hide a later valid rating);
- a rankings row with no decision (NaN / None: the judge failed) is skipped and counted too;
  a decision that is not ``a`` / ``b`` / ``equal`` (or the original ``(a)`` / ``(b)``) is an error.

Beyond the original's single number, :func:`report` gives the 3x3 agreement matrix, consistency
excluding ties, tie rates, Cohen's kappa, bootstrap intervals and breakdowns by rating gap and source.

The bootstrap resamples compared pairs with replacement. Every statistic here is a function of the
9 cell counts, so resampling ``n`` pairs is exactly a multinomial draw of the 9 cells with the
observed cell shares — that is how it is computed (thousands of replicates in milliseconds at 100k
pairs). Pairs of the same instruction are treated as independent, as in the paper.

``verdicts="soft"`` uses the judges' logprob-weighted columns instead (``expected_score`` on ratings,
``p_a`` on rankings; definition in :mod:`sflib.feedback.soft_verdicts`), falling back to the hard verdicts
with a note where they are missing.

The pieces: :mod:`sflib.consistency.compare` (loading, the vectorised comparison),
:mod:`sflib.consistency.report` (the report, breakdowns, annotators side by side, example pairs),
:mod:`sflib.core.stats` (kappa, the bootstraps); this module re-exports them and holds the CLI.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings

import numpy as np
import pandas as pd

from ..core import data
from .compare import (RANKINGS_COLUMNS, RATINGS_INDEX, VENDORED, ConsistencyWarning, agreement_matrix,  # noqa: F401
                      compare, load_rankings, load_ratings, load_vendored)
from .report import (RESAMPLE, ConsistencyReport, compare_annotators, opposite_preferences,  # noqa: F401
                     rated_differently, report, response_words)
from ..feedback.soft_verdicts import VERDICTS
from ..core.stats import cohen_kappa  # noqa: F401

__all__ = [
    "ConsistencyReport", "ConsistencyWarning", "compare", "report", "compare_annotators",
    "cohen_kappa", "agreement_matrix", "load_ratings", "load_rankings", "load_vendored", "add_cli",
    "opposite_preferences", "rated_differently", "response_words",
]


# ----------------------------------------------------------------------------- command line

def _run_cli(args: argparse.Namespace) -> int:
    ratings = load_ratings(args.ratings)
    rankings = load_rankings(args.rankings)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConsistencyWarning)
        rep = report(ratings, rankings, bootstrap=args.bootstrap, seed=args.seed, resample=args.resample,
                     ratings_name=str(args.ratings), rankings_name=str(args.rankings), verdicts=args.verdicts)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
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
