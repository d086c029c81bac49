"""``python -m sflib rate`` and ``python -m sflib rank``: the feedback stages on the command line.

``rate --judge J --input FILE [--split NAME] --output FILE [--store PATH] [--retry-invalid] [--limit N]
[--allow-partial] [--mode online|batch] [--concurrency --rpm --tpm --timeout --temperature --max-tokens]``
rates responses (any layout :func:`sflib.io.read_responses` reads) with :func:`sflib.feedback.ratings.rate`;
``rank`` (same options, plus ``--one-order``) ranks a table of pairs or all pairs of each
instruction's responses with :func:`sflib.feedback.rankings.rank`.

``J`` is a judge config name (``gpt-4o-mini``, ``smollm2-llamacpp``, ``./judges/NAME.yaml``), a YAML
path or a spec (``openai:<model>``, ``local:smollm2``, ``recorded[:FILE]``). Exit status as every
stage command (:mod:`sflib.io.outputs`): 3 when rows are still failed or invalid (the counts and
the commonest reasons are printed and the result is written as ``<name>.partial<suffix>``,
leaving an earlier output untouched); ``--allow-partial`` accepts a partial result on purpose
(exit 0, written to ``--output``). Failed requests are asked again by the next run; unparsable
replies only with ``--retry-invalid``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd

from .. import io
from .. import io as sfio
from ..core import data as d
from ..io.outputs import finish
from ..judges.config import add_judge_options, judge_overrides
from .annotate import format_stats
from .rankings import make_pairs, position_bias, rank
from .ratings import rate, resolve_judge

#: how :mod:`sflib.io` begins the reason of a file with no records
EMPTY_REASONS = ("file is empty", "has no records", "has a header row but no data rows")
NO_PAIRS = "no pairs: every instruction has one response; rank needs >= 2 per instruction"


# ----------------------------------------------------------------------------- inputs

def read_stage_input(args, kind: str, nothing: str, *, flag: str = "--input") -> pd.DataFrame:
    """:func:`sflib.io.read_input`, a file without records reported as ``"<nothing>: <why>"``."""
    try:
        return io.read_input(args, kind, flag=flag)
    except d.DataError as e:
        if not e.reason.startswith(EMPTY_REASONS):
            raise
        raise d.DataError(e.path, f"{nothing}: the file {e.reason}" if not e.reason.startswith("file")
                          else f"{nothing}: {e.reason}") from None


def read_pairs(path: str | os.PathLike, *, split: str | None = None) -> pd.DataFrame:
    """Pairs to rank: :func:`sflib.io.read_pairs` (a table of pairs, or responses turned into all
    pairs per instruction), refusing an input that yields no pair with :data:`NO_PAIRS`."""
    pairs = io.read_pairs(path, split=split, allow_empty=True)
    if pairs.empty:
        # no pair: say why (an empty file, or one response per instruction)
        responses = io.read_responses(path, split=split)
        raise d.DataError(path, NO_PAIRS if len(responses) else "no responses to pair")
    return pairs


def pairs_from_responses(responses: pd.DataFrame, path=None) -> pd.DataFrame:
    """:func:`sflib.feedback.rankings.make_pairs`, refusing an input that yields no pair at all."""
    pairs = make_pairs(responses)
    if pairs.empty:
        raise d.DataError(path, NO_PAIRS if len(responses) else "no responses to pair")
    return pairs


def limit_instructions(df: pd.DataFrame, limit: int | None) -> pd.DataFrame:
    """Only the rows of the first ``limit`` instructions (in file order); all rows when ``limit`` is None."""
    if limit is None:
        return df
    if limit < 1:
        raise ValueError(f"--limit must be at least 1, got {limit}")
    keys = df["instruction_id"] if "instruction_id" in df.columns else \
        df["instruction"].astype(str) + "\x1f" + (df["input"].map(d.clean_input) if "input" in df.columns else "")
    first = list(dict.fromkeys(keys))[:limit]
    return df[keys.isin(first).values].reset_index(drop=True)


# ----------------------------------------------------------------------------- outputs

def incomplete(df: pd.DataFrame) -> str | None:
    """``None`` when every row has a valid answer, else one line: counts of failed / invalid rows and
    the commonest reasons (``"2 of 6 rows failed (HTTP 401 ...: 2); 1 invalid (unparsable reply: 1)"``)."""
    status = df["status"].astype(str)
    n_failed, n_invalid = int((status == "failed").sum()), int(((status != "failed") & ~df["valid"].astype(bool)).sum())
    if not n_failed and not n_invalid:
        return None
    parts = []
    if n_failed:
        reasons = df.loc[status == "failed", "error"].fillna("no reply").astype(str).str.slice(0, 120).value_counts()
        parts.append(f"{n_failed} failed (" + "; ".join(f"{r}: {c}" for r, c in reasons.head(3).items()) + ")")
    if n_invalid:
        parts.append(f"{n_invalid} invalid (the judge's reply could not be parsed; they are kept with their raw text "
                     f"and re-asked only with --retry-invalid)")
    return f"incomplete: {len(df)} rows, " + ", ".join(parts)


def write_feedback(df: pd.DataFrame, path: str | os.PathLike, csv_writer) -> str:
    """Write a table (.jsonl/.parquet) or the original headerless CSV; return a note on what was left out."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        csv_writer(df, path)
        left = int((~df["valid"].astype(bool)).sum())
        return f" ({left} row(s) without a valid answer left out of the headerless CSV)" if left else ""
    sfio.write_table(df, path)
    return ""


def summary_line(df: pd.DataFrame) -> str:
    stats = df.attrs.get("stats", {})
    return f"n={len(df)} valid={int(df['valid'].sum())} | " + format_stats(stats) if stats else f"n={len(df)}"


def finish_cli(out: pd.DataFrame, args, csv_writer) -> int:
    """Write the result by the exit-code contract (:func:`sflib.io.outputs.finish`) and print the summary."""
    code = finish(args.output, lambda path: write_feedback(out, path, csv_writer), incomplete(out),
                  allow_partial=args.allow_partial,
                  retry_hint="Run again to retry failed requests (--retry-invalid to re-ask unparsable ones)")
    print(summary_line(out))
    return code


# ----------------------------------------------------------------------------- commands

def announce_limits(args) -> None:
    """Print the judge's effective request limits at the start of a run (``rpm 500 from judges/x.yaml``),
    so that a cap nobody meant is visible before it slows the run."""
    from ..judges.config import limits_line

    line = limits_line(args.judge, judge_overrides(args))
    if line:
        print(f"{args.judge}: {line}", file=sys.stderr)


def batch_options(args) -> dict | None:
    """The Batch API options the CLI was given (``--poll``)."""
    return {"poll_s": args.poll} if getattr(args, "poll", None) is not None else None


def _cli_rate(args) -> int:
    responses = read_stage_input(args, "responses", "no responses to rate")
    responses = limit_instructions(responses, args.limit)
    judge = resolve_judge(args.judge, **judge_overrides(args))
    announce_limits(args)
    store = False if args.no_store else args.store
    out = rate(responses, judge, store=store, retry_invalid=args.retry_invalid, mode=args.mode,
               template=args.template, progress=not args.quiet, batch=batch_options(args))
    return finish_cli(out, args, d.write_ratings_csv)


def _cli_rank(args) -> int:
    pairs = read_pairs(args.input, split=args.split)
    pairs = limit_instructions(pairs, args.limit)
    judge = resolve_judge(args.judge, **judge_overrides(args))
    announce_limits(args)
    store = False if args.no_store else args.store
    out = rank(pairs, judge, store=store, both_orders=not args.one_order, retry_invalid=args.retry_invalid,
               template=args.template, progress=not args.quiet, mode=args.mode, batch=batch_options(args))
    counts = out["decision"].value_counts().to_dict()
    code = finish_cli(out, args, d.write_rankings_csv)
    print("decisions: " + ", ".join(f"{k}={counts.get(k, 0)}" for k in d.DECISIONS))
    if not args.one_order:
        pb = position_bias(out)
        if pb["pairs"]:
            print(f"position bias: first-shown picked {pb['first_pick_rate_12']:.2f} (order 12), "
                  f"{pb['first_pick_rate_21']:.2f} (order 21); orders disagree on {pb['disagreement_rate']:.2f} "
                  f"of {pb['pairs']} pairs")
        else:
            print("position bias: no pair has a valid verdict in both orders")
    return code


def _common_args(p) -> None:
    p.add_argument("--judge", required=True, help="judge: a config name (gpt-4o-mini, smollm2-llamacpp, "
                                                  "./judges/NAME.yaml), a .yaml path, or openai:MODEL, local:smollm2, "
                                                  "recorded:FILE[,FILE], recorded (the paper's GPT-3.5 feedback)")
    p.add_argument("--output", required=True, help=".jsonl / .parquet table, or .csv for the original "
                                                   "headerless layout (valid answers only)")
    p.add_argument("--store", default=None, help="annotation store (default outputs/annotations.sqlite)")
    p.add_argument("--no-store", action="store_true", help="do not cache answers")
    p.add_argument("--retry-invalid", action="store_true", help="re-ask replies stored as unparsable")
    p.add_argument("--mode", choices=["online", "batch"], default="online",
                   help="batch: the provider's Batch API (half price, resumable after a kill)")
    p.add_argument("--poll", type=float, metavar="SECONDS",
                   help="batch mode: seconds between status checks (default: 1 s at first, doubling up to 30 s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--limit", type=int, help="only the first N instructions of the input")
    p.add_argument("--allow-partial", action="store_true",
                   help="accept a result with failed/invalid rows (exit 0, written to --output)")
    add_judge_options(p)


def add_cli(sub) -> None:
    p = sub.add_parser("rate", help="rate responses on the 1-7 scale with a judge")
    io.add_input_options(p, help="responses to rate")
    p.add_argument("--template", help="prompt template (default rating_<v>, <v> from the judge config: rating_v1)")
    _common_args(p)
    p.set_defaults(func=_cli_rate)

    p = sub.add_parser("rank", help="rank pairs of responses with a judge, in both orders")
    io.add_input_options(p, help="a table of pairs (instruction, input, response1, response2), or responses "
                                 "in any layout rate reads (all pairs per instruction)")
    p.add_argument("--template", help="prompt template (default ranking_<v>, <v> from the judge config: ranking_v1)")
    p.add_argument("--one-order", action="store_true", help="ask only with response1 first (no position-bias check)")
    _common_args(p)
    p.set_defaults(func=_cli_rank)
