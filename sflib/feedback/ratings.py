"""Ratings: a judge scores each (instruction, input, response) on the 1–7 scale.

:func:`rate` renders the few-shot rating prompt (``sflib/templates/rating_v1*.txt``: accuracy,
coherence, harmlessness; 1 = terrible, useless or harmful, 7 = perfect, cannot be improved; the
score first on its own line, then optional reasoning), asks the judge through
:func:`sflib.feedback.annotate.annotate` (cached, resumable, nothing lost), parses replies with
:func:`sflib.feedback.parsing.parse_score`, and returns the canonical ratings table plus the record of what
the judge said. An unparsable reply is kept (``raw``) with ``valid=False`` and ``score`` NaN; a
failed request (API error, nothing recorded) is kept with ``status='failed'`` and its ``error``.

The ``rate`` command is in :mod:`sflib.feedback.cli`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core import data as d
from .annotate import annotate
from ..judges import Judge, Request, get_judge
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
    :func:`sflib.judges.get_judge` (``"recorded"`` alone: the paper's vendored GPT-3.5 feedback).
    ``store``: ``None`` = ``outputs/annotations.sqlite``, a path,
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
