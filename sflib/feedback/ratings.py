"""Ratings: a judge scores each (instruction, input, response) on the 1–7 scale.

:func:`rate` renders the few-shot rating prompt (``sflib/templates/rating_v1*.txt``: accuracy,
coherence, harmlessness; 1 = terrible, useless or harmful, 7 = perfect, cannot be improved; the
score first on its own line, then optional reasoning), asks the judge through
:func:`sflib.feedback.annotate.annotate` (cached, resumable, nothing lost), parses replies with
:func:`sflib.feedback.parsing.parse_score`, and returns the canonical ratings table plus the record of what
the judge said. An unparsable reply is kept (``raw``) with ``valid=False`` and ``score`` NaN; a
failed request (API error, nothing recorded) is kept with ``status='failed'`` and its ``error``.

CLI: ``python -m sflib rate --judge J --input FILE [--split NAME] --output FILE [--store PATH] [--retry-invalid]
[--limit N] [--allow-partial] [--concurrency --rpm --tpm --timeout --temperature --max-tokens]``.
``FILE`` is any layout :func:`sflib.io.read_responses` reads (a saved ``datasets`` folder with
``--split``). ``J`` is a judge config name (``gpt-4o-mini``, ``smollm2-llamacpp``, ``./judges/NAME.yaml``), a YAML
path or a spec (``openai:<model>``, ``local:smollm2``, ``recorded[:FILE]``). The command exits with
status 3 when rows are still failed or invalid (the counts and the commonest reasons are printed and
the result is written beside the output as ``<name>.partial<suffix>``, leaving an earlier output
untouched); ``--allow-partial`` accepts a partial result on purpose (exit 0, written to ``--output``).
Failed requests are asked again by the next run; unparsable replies only with ``--retry-invalid``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core import data as d
from .. import io
from .annotate import annotate, format_stats
from ..judges import Judge, Request, get_judge
from ..judges.config import add_judge_options, judge_overrides
from .parsing import parse_score
from ..core.paths import outputs_dir
from ..core.prompts import load_template
from .store import AnnotationStore

#: columns :func:`rate` adds after :data:`sflib.core.data.RATING_COLUMNS`
RATING_RECORD_COLUMNS = ["judge", "valid", "status", "raw", "error", "template_version",
                         "prompt_tokens", "completion_tokens", "cached", "expected_score"]


# ----------------------------------------------------------------------------- shared helpers

def template_version(template: str) -> str:
    """The version tag of a template name: ``rating_v1`` -> ``rating-v1`` (part of the cache key)."""
    return template.replace("_", "-")


def task_block(instruction: str, input: object = "") -> str:
    """The task as the judge sees it, Alpaca style: ``### Instruction:`` and, if non-empty, ``### Input:``."""
    inp = d.clean_input(input)
    text = f"### Instruction:\n{instruction}"
    if inp:
        text += f"\n\n### Input:\n{inp}"
    return text


def render_messages(template: str, **fields: str) -> list[dict[str, str]]:
    """System + user chat messages from ``<template>_system.txt`` and ``<template>.txt``."""
    system = load_template(f"{template}_system").strip()
    user = load_template(template).format(**fields).strip()
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def open_store(store: Any) -> tuple[AnnotationStore | None, bool]:
    """``(store, opened_here)`` from ``None`` (the default store ``outputs/annotations.sqlite``),
    ``False`` (no store), a path, or an :class:`AnnotationStore`."""
    if store is False:
        return None, False
    if isinstance(store, AnnotationStore):
        return store, False
    path = Path(store) if store is not None else outputs_dir() / "annotations.sqlite"
    return AnnotationStore(path), True


def annotate_with_store(judge: Judge, requests: list, store: Any, *, template: str, parse, retry_invalid: bool,
                        desc: str, progress: bool, mode: str = "online", batch: dict | None = None) -> pd.DataFrame:
    """:func:`sflib.feedback.annotate.annotate` with ``store`` given as :func:`open_store` accepts it
    (a store opened here is closed afterwards)."""
    st, opened = open_store(store)
    try:
        return annotate(judge, requests, store=st, template_version=template_version(template), parse=parse,
                        retry_invalid=retry_invalid, desc=desc, progress=progress, mode=mode, batch=batch)
    finally:
        if opened:
            st.close()


def soft_values(res: pd.DataFrame) -> np.ndarray:
    """The annotate() result's ``soft`` verdicts where they came from log-probabilities, NaN elsewhere
    (a verdict re-read from the text is not a soft verdict)."""
    if "soft" not in res:
        return np.full(len(res), np.nan)
    soft = pd.to_numeric(res["soft"], errors="coerce")
    if "soft_source" in res:
        soft = soft.where(res["soft_source"] == "logprobs")
    return soft.astype(float).values


def resolve_judge(judge: str | Judge, **overrides: Any) -> Judge:
    """A :class:`Judge` from a judge or a name (config, YAML path or spec; ``"recorded"`` alone is the
    paper's vendored GPT-3.5 feedback); ``overrides`` as for :func:`sflib.judges.get_judge`."""
    return get_judge(judge, **overrides) if isinstance(judge, str) else judge


def default_template(judge: Judge, kind: str) -> str:
    """``<kind>_<version>`` with the judge config's template version (``v1`` when it has none)."""
    return f"{kind}_{getattr(judge, 'template', None) or 'v1'}"


def _with_ids(df: pd.DataFrame, text_columns: list[str], id_columns: list[str]) -> pd.DataFrame:
    df = df.copy()
    if "output" in df.columns and "response" in text_columns and "response" not in df.columns:
        df = df.rename(columns={"output": "response"})
    if "input" not in df.columns:
        df["input"] = ""
    missing = [c for c in text_columns if c not in df.columns]
    if missing:
        raise ValueError(f"expected columns {', '.join(text_columns)}; missing {', '.join(missing)} "
                         f"(have: {', '.join(map(str, df.columns))})")
    df["input"] = [d.clean_input(x) for x in df["input"]]
    if any(c not in df.columns for c in id_columns):
        df = d.add_ids(df)
    return df.reset_index(drop=True)


def _front(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return df[columns + [c for c in df.columns if c not in columns]]


# ----------------------------------------------------------------------------- rate

def rating_request(instruction: str, input: object, response: str, template: str = "rating_v1",
                   repeat: int = 0) -> Request:
    """The request for one rating; ``meta`` carries the texts (used by the recorded judge).

    ``repeat`` > 0 marks the k-th repetition of the same (instruction, input, response) in one
    input: it gets its own cache entry (``meta["cache_salt"]``), so each row is an independent
    annotation as in the original protocol, and the recorded judge answers its k-th recording.
    """
    messages = render_messages(template, task=task_block(instruction, input), response=response)
    meta = {"kind": "rating", "instruction": instruction, "input": d.clean_input(input), "response": response}
    if repeat:
        meta.update(repeat=int(repeat), cache_salt=f"repeat-{int(repeat)}")
    return Request(messages=messages, meta=meta)


def rate(responses: pd.DataFrame, judge: str | Judge, *, store: Any = None, template: str | None = None,
         retry_invalid: bool = False, progress: bool = True, mode: str = "online",
         batch: dict | None = None) -> pd.DataFrame:
    """Rate every response with ``judge`` and return one row per input row, in order.

    ``responses`` has ``instruction, input, response`` (``output`` is accepted for ``response``;
    ids are added when absent). ``judge`` is a :class:`Judge` or a name for
    :func:`sflib.judges.get_judge` (``"recorded"`` alone: the paper's vendored GPT-3.5 feedback). ``store``: ``None`` = ``outputs/annotations.sqlite``, a path,
    an :class:`AnnotationStore`, or ``False`` for none. ``retry_invalid`` re-asks replies stored as
    unparsable (failed requests are always re-asked). ``mode="batch"`` sends the requests through the
    provider's Batch API (half price; resumable, see :mod:`sflib.judges.batch`; ``batch``: its options,
    e.g. ``{"poll_s": 5}``).

    Returns :data:`sflib.core.data.RATING_COLUMNS` + :data:`RATING_RECORD_COLUMNS` + the input's other
    columns; ``score`` is NaN where ``valid`` is False. ``template``: default ``rating_<v>`` with the
    judge config's template version ``<v>`` (``rating_v1``). ``.attrs["stats"]`` has the run's counts,
    tokens and cost (see :func:`sflib.feedback.annotate.annotate`).
    """
    judge = resolve_judge(judge)
    template = template or default_template(judge, "rating")
    df = _with_ids(responses, ["instruction", "input", "response"], ["instruction_id", "response_id"])
    repeats = df.groupby(["instruction_id", "response_id"], sort=False).cumcount()
    requests = [rating_request(i, x, r, template, k)
                for i, x, r, k in zip(df["instruction"].tolist(), df["input"].tolist(), df["response"].tolist(),
                                      repeats.tolist())]
    res = annotate_with_store(judge, requests, store, template=template, parse=parse_score,
                              retry_invalid=retry_invalid, desc=f"rate ({judge.name})", progress=progress,
                              mode=mode, batch=batch)
    out = df.copy()
    out["score"] = pd.to_numeric(res["value"].where(res["valid"]), errors="coerce").astype(float).values
    for col in ["judge", "valid", "status", "raw", "error", "prompt_tokens", "completion_tokens", "cached"]:
        out[col] = res[col].values
    out["expected_score"] = soft_values(res)     # logprob-weighted score where the judge returned logprobs
    out["template_version"] = template_version(template)
    out = _front(out, d.RATING_COLUMNS + RATING_RECORD_COLUMNS)
    out.attrs["stats"] = dict(res.attrs["stats"])
    return out


def valid_ratings(ratings: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The valid ratings with each response counted once: ``(rows, counts)``.

    Rows without a valid score (``valid`` False, or a score that is not a number) are set aside
    first; then a response rated more than once keeps its **first** valid rating — the rule of
    :mod:`sflib.consistency` (the paper's released sample rates two responses twice, 6 then 5 and 5
    then 4). A response is its ``response_id`` (else its ``instruction, input, response`` text), per
    ``judge`` when the table has one, so several judges' ratings of one response all stay. Score
    distributions, counts and plots of a ratings table go through this, so a figure and a table
    of the same ratings report the same n.

    ``counts``: ``rows`` (read), ``without_score``, ``duplicates`` (later ratings of a response,
    dropped), ``conflicting`` (of those, with a score other than the one kept), ``used``.
    """
    score = pd.to_numeric(ratings["score"], errors="coerce") if "score" in ratings else pd.Series(
        np.nan, index=ratings.index, dtype=float)
    ok = score.notna()
    if "valid" in ratings.columns:
        ok &= ratings["valid"].fillna(False).astype(bool)
    df = ratings.loc[ok].copy()
    df["score"] = score[ok].astype(int)
    if "response_id" in df.columns:
        keys = ["response_id"]
    else:
        keys = [c for c in ("instruction", "input", "response") if c in df.columns]
        keys = keys if "response" in keys else []
    dup = pd.Series(False, index=df.index)
    conflicting = 0
    if keys:
        keys = keys + (["judge"] if "judge" in df.columns else [])
        ident = df[keys].astype(str)
        if "input" in keys:
            ident["input"] = [d.clean_input(x) for x in df["input"]]
        dup = ident.duplicated(keep="first")
        first_score = df["score"].groupby([ident[c] for c in keys], sort=False).transform("first")
        conflicting = int((dup & (df["score"] != first_score)).sum())
    out = df.loc[~dup]
    counts = {"rows": len(ratings), "without_score": int((~ok).sum()), "duplicates": int(dup.sum()),
              "conflicting": conflicting, "used": len(out)}
    return out, counts


# ----------------------------------------------------------------------------- CLI

def read_responses(path: str | os.PathLike, *, split: str | None = None) -> pd.DataFrame:
    """Responses to rate, in any layout :func:`sflib.io.read_responses` reads (kept for the notebooks)."""
    return io.read_responses(path, split=split)


#: how :mod:`sflib.io` begins the reason of a file with no records
EMPTY_REASONS = ("file is empty", "has no records", "has a header row but no data rows")


def read_stage_input(args, kind: str, nothing: str, *, flag: str = "--input") -> pd.DataFrame:
    """:func:`sflib.io.read_input`, a file without records reported as ``"<nothing>: <why>"``."""
    try:
        return io.read_input(args, kind, flag=flag)
    except d.DataError as e:
        if not e.reason.startswith(EMPTY_REASONS):
            raise
        raise d.DataError(e.path, f"{nothing}: the file {e.reason}" if not e.reason.startswith("file")
                          else f"{nothing}: {e.reason}") from None


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


def finish_cli(out: pd.DataFrame, args, csv_writer) -> int:
    """Write the result and report; exit status 3 when rows are failed/invalid and not ``--allow-partial``."""
    problem = incomplete(out)
    target = Path(args.output)
    if problem and not args.allow_partial:
        target = target.with_name(f"{target.stem}.partial{target.suffix}")
    note = write_feedback(out, target, csv_writer)
    print(f"wrote {target}{note}")
    print(summary_line(out))
    if problem:
        print(problem, file=sys.stderr)
        if not args.allow_partial:
            print(f"not written to {args.output}: the run is incomplete. Run again to retry failed requests "
                  f"(--retry-invalid to re-ask unparsable ones), or pass --allow-partial to accept it.",
                  file=sys.stderr)
            return 3
    return 0


def write_feedback(df: pd.DataFrame, path: str | os.PathLike, csv_writer) -> str:
    """Write a table (.jsonl/.parquet) or the original headerless CSV; return a note on what was left out."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        csv_writer(df, path)
        left = int((~df["valid"].astype(bool)).sum())
        return f" ({left} row(s) without a valid answer left out of the headerless CSV)" if left else ""
    d.write_table(df, path)
    return ""


def summary_line(df: pd.DataFrame) -> str:
    stats = df.attrs.get("stats", {})
    return f"n={len(df)} valid={int(df['valid'].sum())} | " + format_stats(stats) if stats else f"n={len(df)}"


def _cli_rate(args) -> int:
    responses = read_stage_input(args, "responses", "no responses to rate")
    responses = limit_instructions(responses, args.limit)
    judge = resolve_judge(args.judge, **judge_overrides(args))
    announce_limits(args)
    store = False if args.no_store else args.store
    out = rate(responses, judge, store=store, retry_invalid=args.retry_invalid, mode=args.mode,
               template=args.template, progress=not args.quiet, batch=batch_options(args))
    return finish_cli(out, args, d.write_ratings_csv)


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
