"""One reader per kind of table, each returning a validated frame with the SPEC's names and stable ids.

| kind            | columns (canonical first, any other column of the file kept after them) |
| instructions    | ``id, instruction, input, source`` (deduplicated by id) |
| responses       | ``instruction_id, response_id, instruction, input, response, generator, params`` |
| pairs           | ``instruction_id, response_id_1, response_id_2, instruction, input, response1, response2`` |
| ratings         | ``instruction_id, response_id, instruction, input, response, score`` (1-7) |
| rankings        | ``... response1, response2, decision`` (``a`` / ``b`` / ``equal``) |
| model_outputs   | ``instruction, output, generator, dataset, instruction_id`` (AlpacaEval layout) |
| annotations     | rankings + ``reference, policy, judge, preference, valid`` (AlpacaEval ``annotations.json``) |

Every reader takes any file :mod:`sflib.io.sniff` can load (JSON, JSON Lines, CSV with or without
header, Parquet, a ``datasets`` folder with ``split``). Names other layouts use are mapped:
``output`` -> ``response`` (``response`` -> ``output`` for model outputs), ``output1/output_1`` ->
``response1``, ``feedback`` -> ``decision``, Dolly's ``context`` -> ``input`` and ``category`` ->
``source``. A column is never dropped silently: when a mapped name and its target both carry text,
the reader refuses. A missing ``input`` column is an empty input. An empty table is an error
unless ``allow_empty=True``.
"""
from __future__ import annotations

import math
import os
from typing import Iterable

import numpy as np
import pandas as pd

from ..core import catalog, data as d
from ..core.data import DataError
from . import checks as c
from .alpaca_eval import read_annotations, read_model_outputs
from .sniff import Raw, load

KINDS = ("instructions", "responses", "pairs", "ratings", "rankings", "model_outputs", "annotations")


# ----------------------------------------------------------------------------- instructions

def read_instructions(path: os.PathLike | str, *, source: str | None = None, split: str | None = None,
                      allow_empty: bool = False) -> pd.DataFrame:
    """Instructions (``id, instruction, input, source``), duplicates (same instruction and input)
    dropped keeping the first. ``source`` defaults to each record's ``source`` (or ``dataset`` /
    Dolly's ``category``), else the file's stem."""
    raw = c.load_kind("instructions", path, split, allow_empty, d.INSTRUCTION_COLUMNS)
    if isinstance(raw, pd.DataFrame):
        return raw
    df = c.rename(raw, "instructions")
    c.require(raw, df, ["instruction"])
    c.require_text(raw, df, "instruction")
    c.clean_inputs(raw, df)
    df["instruction"] = [d._normalise_newlines(v) for v in df["instruction"]]
    default = source if source is not None else raw.path.stem
    if source is not None or "source" not in df:
        df["source"] = default
    else:
        df["source"] = [default if c.blank(v) else str(v) for v in df["source"]]
    df["id"] = [d.make_id(i, x) for i, x in zip(df["instruction"], df["input"])]
    df = c.order(df, d.INSTRUCTION_COLUMNS, raw)
    attrs = dict(df.attrs)
    df, dropped = d.dedupe(df, ["id"])
    df.attrs.update(attrs, duplicates_dropped=dropped)
    return df


# ----------------------------------------------------------------------------- responses & pairs

def _explode_responses(raw: Raw, df: pd.DataFrame) -> tuple[Raw, pd.DataFrame]:
    """The generation layout ``{instruction, input, responses: [...]}``: one row per response."""
    keep, rows, lines, texts = [], [], [], []
    for i, value in enumerate(df["responses"]):
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if not isinstance(value, list):
            raise raw.error(i, f"expected a list of responses, found {type(value).__name__}", "responses")
        if not value:
            raise raw.error(i, "has no responses (an empty list)", "responses")
        for k, text in enumerate(value, 1):
            if not isinstance(text, str):
                raise raw.error(i, f"response {k} is {type(text).__name__}, expected text", "responses")
            keep.append(i)
            texts.append(text)
            rows.append(raw.rows[i])
            lines.append(raw.lines[i] if raw.lines else raw.rows[i])
    out = df.iloc[keep].drop(columns=["responses"]).reset_index(drop=True)
    out["response"] = texts
    return Raw(raw.path, raw.fmt, out, rows, lines if raw.lines else None, raw.header, raw.names), out


def _responses(raw: Raw, generator: str) -> pd.DataFrame:
    df = c.rename(raw, "responses")
    c.require(raw, df, ["instruction"])
    c.require_text(raw, df, "instruction")
    if "response" not in df and "responses" in df:
        raw, df = _explode_responses(raw, df)
    c.require(raw, df, ["response"])
    c.require_text(raw, df, "response", allow_empty=True)
    c.clean_inputs(raw, df)
    df = d.add_ids(df)
    c.optional_text(df, "generator", generator)
    if "params" not in df:
        df["params"] = "{}"
    return c.order(df, d.RESPONSE_COLUMNS, raw)


def read_responses(path: os.PathLike | str, *, generator: str = "", split: str | None = None,
                   allow_empty: bool = False) -> pd.DataFrame:
    """Responses from a generation JSON (``responses: [...]`` per instruction), a table or CSV with
    ``response`` (or ``output``: AlpacaEval outputs, Alpaca-style tables), one row per response.
    An empty response text is kept (a model may answer nothing); a CSV row with too few fields is
    an error, never read as empty responses."""
    raw = c.load_kind("responses", path, split, allow_empty, d.RESPONSE_COLUMNS)
    return raw if isinstance(raw, pd.DataFrame) else _responses(raw, generator)


def read_pairs(path: os.PathLike | str, *, split: str | None = None, allow_empty: bool = False) -> pd.DataFrame:
    """Pairs to rank: a table of pairs (``response1, response2``) or of responses (every pair of
    distinct responses to the same instruction). Refuses a file from which no pair can be made."""
    cols = d.RANKING_COLUMNS[:-1]
    raw = c.load_kind("pairs", path, split, allow_empty, cols)
    if isinstance(raw, pd.DataFrame):
        return raw
    df = c.rename(raw, "pairs")
    if "response1" not in df and "response2" not in df:
        responses = _responses(raw, "")
        pairs = d.all_pairs(responses)
        extra = [c for c in ("source", "dataset") if c in responses]
        if extra and len(pairs):
            pairs = pairs.join(responses.drop_duplicates("instruction_id").set_index("instruction_id")[extra],
                               on="instruction_id")
        if pairs.empty and not allow_empty:
            raise DataError(raw.path, f"no instruction has two different responses, so there is no pair to rank "
                                      f"({responses['instruction_id'].nunique()} instruction(s), "
                                      f"{len(responses)} response(s))", field="response")
        return pairs
    c.require(raw, df, ["instruction", "response1", "response2"])
    c.require_text(raw, df, "instruction")
    for col in ("response1", "response2"):
        c.require_text(raw, df, col, allow_empty=True)
    c.clean_inputs(raw, df)
    return c.order(d.add_ids(df), cols, raw)


# ----------------------------------------------------------------------------- feedback

def read_ratings(path: os.PathLike | str, *, split: str | None = None, allow_empty: bool = False,
                 missing_as_invalid: bool = False) -> pd.DataFrame:
    """Ratings: the original headerless CSV ``instruction,input,output,score`` or any table with
    ``instruction, response (or output), score``. Scores are integers 1-7; a missing score is
    accepted only on a row stored as invalid (``valid`` false), and is then NaN.
    ``missing_as_invalid`` accepts a missing score on any row (a recording with no answer there)."""
    raw = c.load_kind("ratings", path, split, allow_empty, d.RATING_COLUMNS)
    if isinstance(raw, pd.DataFrame):
        return raw
    df = c.rename(raw, "ratings")
    c.require(raw, df, ["instruction", "response", "score"])
    c.require_text(raw, df, "instruction")
    c.require_text(raw, df, "response", allow_empty=True)
    c.clean_inputs(raw, df)
    invalid = c.invalid_rows(df)
    if missing_as_invalid:
        invalid = invalid | np.array([c.blank(v) for v in df["score"]], dtype=bool)
    df["score"] = _scores(raw, df["score"].tolist(), invalid)
    return c.order(d.add_ids(df), d.RATING_COLUMNS, raw)


def _scores(raw: Raw, values: list, invalid: np.ndarray) -> np.ndarray:
    if not any(isinstance(v, bool) for v in values):  # the fast path, for a column of valid scores
        f = pd.to_numeric(pd.Series(values, dtype=object).map(lambda v: str(v).strip() if isinstance(v, str) else v),
                          errors="coerce").to_numpy(dtype=float)
        ok = np.where(np.isnan(f), invalid & np.array([c.blank(v) for v in values], dtype=bool),
                      (f >= d.SCORE_MIN) & (f <= d.SCORE_MAX) & (f == np.floor(f)))
        if ok.all():
            return f.astype(int) if not np.isnan(f).any() else f
    out = np.empty(len(values), dtype=float)
    for i, v in enumerate(values):
        if c.blank(v):
            if invalid[i]:
                out[i] = np.nan
                continue
            raise raw.error(i, f"score is missing (a score on the {d.SCORE_MIN}-{d.SCORE_MAX} scale is required)", "score")
        try:
            f = float(str(v).strip()) if not isinstance(v, bool) else math.nan
        except ValueError:
            f = math.nan
        if math.isnan(f):
            raise raw.error(i, f"score {v!r} is not a number on the {d.SCORE_MIN}-{d.SCORE_MAX} scale", "score")
        if not (d.SCORE_MIN <= f <= d.SCORE_MAX) or f != int(f):
            raise raw.error(i, f"score {v!r} is outside the {d.SCORE_MIN}-{d.SCORE_MAX} integer scale", "score")
        out[i] = f
    return out.astype(int) if not np.isnan(out).any() else out


def _decisions(raw: Raw, values: list, invalid: np.ndarray) -> list:
    out = []
    for i, v in enumerate(values):
        if c.blank(v):
            if invalid[i]:
                out.append(None)
                continue
            raise raw.error(i, "decision is missing (expected (a), (b) or equal)", "decision")
        label = d._LABELS.get(str(v).strip().lower()) if not c.is_null(v) else None
        if label is None:
            what = raw.names.get("decision", "decision")
            raise raw.error(i, f"unknown {what} label {v!r}; expected one of (a), (b), equal", "decision")
        out.append(label)
    return out


def read_rankings(path: os.PathLike | str, *, split: str | None = None, allow_empty: bool = False,
                  missing_as_invalid: bool = False) -> pd.DataFrame:
    """Rankings: the original headerless CSV ``instruction,input,output1,output2,feedback`` or any table
    with ``instruction, response1, response2, decision`` (``(a)``/``(b)``/``equal`` or ``a``/``b``/``equal``).
    A missing decision is accepted only on a row stored as invalid (``valid`` false), or on any row
    with ``missing_as_invalid`` (a recording with no answer there). AlpacaEval's ``annotations.json``
    (``output_1, output_2, preference``) is read by :func:`sflib.io.read_annotations`."""
    raw = c.load_kind("rankings", path, split, allow_empty, d.RANKING_COLUMNS)
    if isinstance(raw, pd.DataFrame):
        return raw
    if "preference" in raw.frame.columns and not {"decision", "feedback"} & set(map(str, raw.frame.columns)):
        return read_annotations(path, split=split, allow_empty=allow_empty)  # AlpacaEval's annotations.json
    df = c.rename(raw, "rankings")
    c.require(raw, df, ["instruction", "response1", "response2", "decision"])
    c.require_text(raw, df, "instruction")
    for col in ("response1", "response2"):
        c.require_text(raw, df, col, allow_empty=True)
    c.clean_inputs(raw, df)
    invalid = c.invalid_rows(df)
    if missing_as_invalid:
        invalid = invalid | np.array([c.blank(v) for v in df["decision"]], dtype=bool)
    df["decision"] = _decisions(raw, df["decision"].tolist(), invalid)
    return c.order(d.add_ids(df), d.RANKING_COLUMNS, raw)


# ----------------------------------------------------------------------------- any kind, any table

READERS = {"instructions": read_instructions, "responses": read_responses, "pairs": read_pairs,
           "ratings": read_ratings, "rankings": read_rankings, "model_outputs": read_model_outputs,
           "annotations": read_annotations}


def read(kind: str, path: os.PathLike | str, **kwargs) -> pd.DataFrame:
    """The reader of ``kind`` (one of :data:`KINDS`) applied to ``path``."""
    if kind not in READERS:
        raise ValueError(f"unknown kind of table {kind!r}; choose one of: {', '.join(KINDS)}")
    return READERS[kind](path, **kwargs)


def read_role(role: str, original: bool = False) -> pd.DataFrame:
    """The vendored file of ``role`` (:mod:`sflib.core.catalog`) read by the reader of its kind (the canonical
    table keeps its extra columns)."""
    e = catalog.entry(role)
    if e.kind is None:
        raise ValueError(f"{role} is not a table ({e.original})")
    return read(e.kind, catalog.path(role, original))


def read_table(path: os.PathLike | str, required: Iterable[str] = (), *, split: str | None = None,
               allow_empty: bool = False) -> pd.DataFrame:
    """Any table as it is (no kind): the columns in ``required`` must be present; ``input``, when
    present, is cleaned to its canonical form. ``allow_empty`` accepts a file with no records."""
    try:
        raw = load(path, split=split)
    except DataError as e:
        if allow_empty and (e.reason.startswith("file is empty") or e.reason.startswith("has no records")):
            return c.empty(list(required))
        raise
    df = raw.frame
    df.columns = [str(c) for c in df.columns]
    c.require(raw, df, required)
    if "input" in df:
        c.clean_inputs(raw, df)
    return df.infer_objects()
