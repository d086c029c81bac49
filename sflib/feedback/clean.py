"""The one counting rule for feedback tables: which ratings and rankings every stage uses, and why the rest is left out.

Every stage that reads ratings or rankings (02, 03, 04, 05 and the study report) goes through
:func:`clean_ratings` / :func:`clean_rankings`, so "responses rated" and "pairs ranked" are the same number
in every notebook. The rule, in order:

**Ratings** (one row per judge reply about one response):

1. *invalid reply* / *failed request*: a row without a valid score (``valid`` False, or no score) is left out;
   ``status == "failed"`` counts as a failed request, anything else as an invalid (unparsable) reply.
   A score that is present but off the 1–7 scale or not a whole number is bad input: :class:`DataError`.
2. *duplicate rating*: a response rated more than once (same ``response_id`` — computed from the
   instruction, input and response text when absent; a table with neither counts each row as its own
   response —, per ``judge`` when the table has that column) keeps its **first** valid rating; the later ones are left out
   and counted as
   *same score* or *different score* (the paper's released sample rates two responses twice, 6 then 5 and
   5 then 4: two duplicates with a different score).
3. *not one of the responses*: with ``responses`` given (notebook 01's table), a rating of a response that
   is not in it is left out.
4. *missing*: with ``responses`` given, the responses that have no kept rating are counted
   (``"missing: response not rated"``; a count of responses, not of rows).

**Rankings** (one row per pair of responses to one instruction):

1. *invalid reply* / *failed request*: a row without a decision (``valid`` False, or no ``decision``) —
   as for ratings. An unknown decision label is bad input: :class:`DataError`.
2. *duplicate pair*: a pair ranked more than once — the same two responses in either order, per ``judge`` —
   keeps its **first** decision; the later ones are counted as *same decision* or *different decision*
   (a decision of the swapped pair is flipped before it is compared).
3. *not a pair of the responses*: with ``responses`` given, a pair whose two responses are not both 01's
   responses to that instruction is left out.
4. *missing*: with ``responses`` given, the pairs of distinct responses that have no kept decision are
   counted (``"missing: pair not ranked"``).

A pair of a response with an identical copy of itself (two samples with the same text have one
``response_id``) is **kept**: it is a recorded judgment; :func:`rankings_notes` counts it.

Both functions return ``(kept, exclusions)``: the kept rows (original order and columns, scores as
integers) and ``exclusions``, reason -> count, every reason always present (0 when none). The row reasons
sum to ``len(table) - len(kept)``; the ``missing: ...`` entry is the count of items without feedback.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core import data as d
from ..core.data import DataError

INVALID, FAILED = "invalid reply", "failed request"
DUP_SAME_SCORE, DUP_OTHER_SCORE = "duplicate rating, same score", "duplicate rating, different score"
DUP_SAME_DECISION, DUP_OTHER_DECISION = "duplicate pair, same decision", "duplicate pair, different decision"
FOREIGN_RESPONSE, FOREIGN_PAIR = "not one of the responses", "not a pair of the responses"
MISSING_RATING, MISSING_PAIR = "missing: response not rated", "missing: pair not ranked"

RATING_REASONS = (INVALID, FAILED, DUP_SAME_SCORE, DUP_OTHER_SCORE, FOREIGN_RESPONSE, MISSING_RATING)
RANKING_REASONS = (INVALID, FAILED, DUP_SAME_DECISION, DUP_OTHER_DECISION, FOREIGN_PAIR, MISSING_PAIR)

_FLIP = {"a": "b", "b": "a", "equal": "equal"}


def _ids(df: pd.DataFrame, kind: str, name: str) -> pd.DataFrame:
    ids = ["instruction_id", "response_id"] if kind == "ratings" else ["instruction_id", "response_id_1", "response_id_2"]
    if all(c in df.columns for c in ids):
        return df
    text = ["instruction", "input", "response"] if kind == "ratings" else ["instruction", "input", "response1", "response2"]
    missing = [c for c in text if c not in df.columns]
    if missing and kind == "ratings" and not {"response_id", "response"} & set(df.columns):
        # nothing identifies a response: every row is its own response (no duplicates can be found)
        return df.assign(instruction_id=df.get("instruction_id", ""), response_id=[f"row {i + 1}" for i in range(len(df))])
    if missing:
        raise DataError(name, f"{kind} table needs the id columns ({', '.join(ids)}) or the text columns "
                              f"({', '.join(text)}); it has: {', '.join(map(str, df.columns)) or 'none'}",
                        field=missing[0])
    return d.add_ids(df)


def _valid_flag(df: pd.DataFrame) -> pd.Series:
    if "valid" not in df.columns:
        return pd.Series(True, index=df.index)
    return df["valid"].map(lambda v: bool(v) if v is not None and v == v else False).astype(bool)


def _failed(df: pd.DataFrame) -> pd.Series:
    if "status" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["status"].astype(str).eq("failed")


def _scores(df: pd.DataFrame, name: str) -> pd.Series:
    if "score" not in df.columns:
        raise DataError(name, f"ratings table has no 'score' column (it has: {', '.join(map(str, df.columns)) or 'none'})",
                        field="score")
    raw = df["score"]
    score = pd.to_numeric(raw, errors="coerce").astype(float)
    bad = raw.notna() & score.isna()
    bad |= score.notna() & ((score < d.SCORE_MIN) | (score > d.SCORE_MAX) | (score != score.round()))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(name, f"score {raw.iloc[i]!r} is not a whole number on the {d.SCORE_MIN}-{d.SCORE_MAX} scale",
                        row=i + 1, field="score")
    return score


def _decisions(df: pd.DataFrame, name: str) -> pd.Series:
    if "decision" not in df.columns:
        raise DataError(name, f"rankings table has no 'decision' column (it has: {', '.join(map(str, df.columns)) or 'none'})",
                        field="decision")
    raw = df["decision"]
    present = raw.notna() & raw.astype(str).str.strip().ne("")
    canon = raw.where(~present, raw.astype(str).str.strip().str.lower().map(d._LABELS))
    bad = present & canon.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(name, f"unknown decision label {str(raw.iloc[i])!r}; expected a / b / equal "
                              "(or the original (a) / (b) / equal)", row=i + 1, field="decision")
    return canon.where(present)


def _no_answer(df: pd.DataFrame, has_answer: pd.Series, exclusions: dict) -> pd.Series:
    ok = has_answer & _valid_flag(df)
    failed = ~ok & _failed(df)
    exclusions[FAILED] = int(failed.sum())
    exclusions[INVALID] = int((~ok & ~failed).sum())
    return ok


def clean_ratings(ratings: pd.DataFrame, responses: pd.DataFrame | None = None, *,
                  name: str = "ratings") -> tuple[pd.DataFrame, dict[str, int]]:
    """The ratings every stage uses and what was left out, by the rule in this module's docstring.

    ``responses``: notebook 01's table (``response_id``), to count the responses left unrated and to
    leave out ratings of other responses; None to skip both (their counts are 0)."""
    exclusions = dict.fromkeys(RATING_REASONS, 0)
    if ratings is None or len(ratings) == 0:
        if responses is not None and len(responses):
            exclusions[MISSING_RATING] = int(responses["response_id"].nunique())
        return (pd.DataFrame(columns=list(getattr(ratings, "columns", [])) or ["response_id", "score"]), exclusions)
    df = _ids(ratings, "ratings", name)
    score = _scores(df, name)
    ok = _no_answer(df, score.notna(), exclusions)
    keys = ["response_id"] + (["judge"] if "judge" in df.columns else [])
    ident = df[keys].astype(str).agg("\x1f".join, axis=1)
    dup = ok & ident.where(ok).duplicated(keep="first")
    first = score.where(ok).groupby(ident.where(ok)).transform("first")
    other = dup & (score != first)
    exclusions[DUP_OTHER_SCORE] = int(other.sum())
    exclusions[DUP_SAME_SCORE] = int((dup & ~other).sum())
    keep = ok & ~dup
    if responses is not None:
        known = set(responses["response_id"]) if len(responses) else set()
        foreign = keep & ~df["response_id"].isin(known)
        exclusions[FOREIGN_RESPONSE] = int(foreign.sum())
        keep &= ~foreign
        exclusions[MISSING_RATING] = len(known - set(df.loc[keep, "response_id"]))
    kept = df.loc[keep].copy()
    kept["score"] = score[keep].astype(int)
    return kept, exclusions


def _pair_key(df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """An order-free key of each pair (per judge) and whether the row lists it swapped."""
    a, b = df["response_id_1"].astype(str), df["response_id_2"].astype(str)
    swapped = a > b
    lo, hi = a.where(~swapped, b), b.where(~swapped, a)
    key = df["instruction_id"].astype(str) + "\x1f" + lo + "\x1f" + hi
    if "judge" in df.columns:
        key = key + "\x1f" + df["judge"].astype(str)
    return key, swapped


def clean_rankings(rankings: pd.DataFrame, responses: pd.DataFrame | None = None, *,
                   name: str = "rankings") -> tuple[pd.DataFrame, dict[str, int]]:
    """The rankings every stage uses and what was left out, by the rule in this module's docstring.

    ``responses``: notebook 01's table, to count its pairs left unranked and to leave out pairs that
    are not two of its responses to one instruction; None to skip both."""
    exclusions = dict.fromkeys(RANKING_REASONS, 0)
    expected = _expected_pairs(responses) if responses is not None else None
    if rankings is None or len(rankings) == 0:
        if expected is not None:
            exclusions[MISSING_PAIR] = len(expected)
        return (pd.DataFrame(columns=list(getattr(rankings, "columns", [])) or ["response_id_1", "response_id_2",
                                                                                 "decision"]), exclusions)
    df = _ids(rankings, "rankings", name)
    decision = _decisions(df, name)
    ok = _no_answer(df, decision.notna(), exclusions)
    key, swapped = _pair_key(df)
    oriented = decision.where(~swapped, decision.map(_FLIP))
    dup = ok & key.where(ok).duplicated(keep="first")
    first = oriented.where(ok).groupby(key.where(ok)).transform("first")
    other = dup & (oriented != first)
    exclusions[DUP_OTHER_DECISION] = int(other.sum())
    exclusions[DUP_SAME_DECISION] = int((dup & ~other).sum())
    keep = ok & ~dup
    if responses is not None:
        owner = dict(zip(responses["response_id"], responses["instruction_id"])) if len(responses) else {}
        inst = df["instruction_id"]
        foreign = keep & ~(df["response_id_1"].map(owner).eq(inst) & df["response_id_2"].map(owner).eq(inst))
        exclusions[FOREIGN_PAIR] = int(foreign.sum())
        keep &= ~foreign
        got = {_unordered(i, a, b) for i, a, b in zip(df.loc[keep, "instruction_id"], df.loc[keep, "response_id_1"],
                                                        df.loc[keep, "response_id_2"])}
        exclusions[MISSING_PAIR] = len(expected - got)
    kept = df.loc[keep].copy()
    kept["decision"] = decision[keep]
    return kept, exclusions


def _unordered(instruction_id, a, b) -> tuple:
    return (str(instruction_id),) + tuple(sorted((str(a), str(b))))


def _expected_pairs(responses: pd.DataFrame) -> set:
    """Every pair of distinct responses to one instruction (what notebook 03 asks about)."""
    out = set()
    if responses is None or len(responses) == 0:
        return out
    for inst, ids in responses.groupby("instruction_id", sort=False)["response_id"]:
        u = sorted(set(map(str, ids)))
        out.update((str(inst), u[i], u[j]) for i in range(len(u)) for j in range(i + 1, len(u)))
    return out


def rankings_notes(kept: pd.DataFrame) -> dict[str, int]:
    """Counts about the kept rankings that are not exclusions: pairs of a response with itself."""
    if len(kept) == 0:
        return {"pairs of a response with an identical copy of itself": 0}
    return {"pairs of a response with an identical copy of itself":
            int((kept["response_id_1"].astype(str) == kept["response_id_2"].astype(str)).sum())}


def left_out(exclusions: dict[str, int]) -> int:
    """How many rows the exclusions leave out (every reason but the ``missing: ...`` count)."""
    return sum(v for k, v in exclusions.items() if not k.startswith("missing"))


def describe(exclusions: dict[str, int]) -> str:
    """``"duplicate rating, different score: 2; missing: response not rated: 1"`` (non-zero reasons), or ``"none"``."""
    parts = [f"{k}: {v:,}" for k, v in exclusions.items() if v]
    return "; ".join(parts) or "none"


__all__ = ["clean_ratings", "clean_rankings", "rankings_notes", "left_out", "describe", "RATING_REASONS",
           "RANKING_REASONS"]
