"""Human answers as feedback tables: the same columns :func:`sflib.feedback.ratings.rate` /
:func:`sflib.feedback.rankings.rank` return.

- :func:`human_feedback` — one annotator's ratings or rankings from the store, so
  ``sflib.consistency.report``, reward models and evaluation take them unchanged;
- :func:`known_annotators` / :func:`annotator_summary` — who has answers in a store.

A rankings row combines the orders a human saw a pair in: each stored answer is the *position*
picked (``verdict_12`` / ``verdict_21``; a human may also pick ``equal``). With one order the decision
is that answer turned into response terms (order 21, position a = response2 = decision ``b``); with
both orders (the position-bias check) it is the shared preference, or ``equal`` when the two orders
disagree — the AI judge's rule. A skipped order is left out; a pair skipped in every order it was
shown has no decision (``valid=False``, ``status='invalid'``), like a judge's unreadable reply.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..core import data as d
from ..feedback.rankings import RANKING_RECORD_COLUMNS
from ..feedback.ratings import RATING_RECORD_COLUMNS, open_store
from .items import check_kind
from .lease import PREFIX, judge_name
from .session import TEMPLATE_VERSION, stored_answers

RATINGS_COLUMNS = d.RATING_COLUMNS + RATING_RECORD_COLUMNS
RANKINGS_COLUMNS = d.RANKING_COLUMNS + RANKING_RECORD_COLUMNS


def to_response_choice(position: Any, order: str) -> Any:
    """The position a human picked in ``order`` as a response preference (``a`` = response1 better)."""
    if position not in ("a", "b", "equal"):
        return np.nan
    if position == "equal" or order != "21":
        return position
    return "b" if position == "a" else "a"


def to_position(choice: str, order: str) -> str:
    """The inverse of :func:`to_response_choice`: which shown position means ``choice`` in ``order``."""
    return to_response_choice(choice, "21" if order == "21" else "12")


def _combine(prefs: list) -> Any:
    prefs = [p for p in prefs if p in ("a", "b", "equal")]
    if not prefs:
        return np.nan
    return prefs[0] if all(p == prefs[0] for p in prefs) else "equal"


def _with_store(store, fn):
    st, opened = open_store(store)
    try:
        return fn(st)
    finally:
        if opened:
            st.close()


def human_feedback(store: Any, annotator: str, kind: str = "ratings") -> pd.DataFrame:
    """``annotator``'s answers of ``kind`` as a ratings / rankings table (oldest first).

    Exactly the columns of :func:`sflib.feedback.ratings.rate` (:data:`RATINGS_COLUMNS`) or
    :func:`sflib.feedback.rankings.rank` (:data:`RANKINGS_COLUMNS`); ``judge`` is ``human:<name>``, tokens are 0,
    ``cached`` is True (every answer comes from the store). Skipped tasks are rows with
    ``valid=False``, ``status='invalid'``, ``error='skipped by the annotator'``.
    """
    kind = check_kind(kind)
    judge = judge_name(annotator)
    rows = _with_store(store, lambda st: stored_answers(st, judge, kind))
    if kind == "ratings":
        out = pd.DataFrame({
            **{c: [m.get(c, "") for m in rows["meta"]] for c in ("instruction_id", "response_id", "instruction",
                                                                 "input", "response")},
            "score": [float(v) if ok else np.nan for v, ok in zip(rows["value"], rows["valid"])],
            "judge": judge, "valid": rows["valid"].astype(bool).to_numpy(), "status": rows["status"].to_numpy(),
            "raw": rows["raw"].to_numpy(), "error": rows["error"].to_numpy(),
            "template_version": TEMPLATE_VERSION[kind], "prompt_tokens": 0, "completion_tokens": 0, "cached": True,
        }, columns=RATINGS_COLUMNS)
        out["score"] = out["score"].astype(float)
        return out.reset_index(drop=True)
    records = []
    for item_id, group in rows.groupby("item_id", sort=False):
        m = group["meta"].iloc[0]
        by_order = {o: r for o, r in zip(group["order"], group.to_dict("records"))}
        verdict = {o: (r["value"] if r["valid"] else np.nan) for o, r in by_order.items()}
        prefs = [to_response_choice(verdict[o], o) for o in ("12", "21") if o in verdict]
        decision = _combine(prefs)
        skipped = [o for o, r in by_order.items() if not r["valid"]]
        records.append({
            **{c: m.get(c, "") for c in ("instruction_id", "response_id_1", "response_id_2", "instruction", "input",
                                         "response1", "response2")},
            "decision": decision,
            "verdict_12": verdict.get("12", np.nan), "verdict_21": verdict.get("21", np.nan),
            "raw_12": by_order["12"]["raw"] if "12" in by_order else None,
            "raw_21": by_order["21"]["raw"] if "21" in by_order else None,
            "valid": isinstance(decision, str), "status": "ok" if isinstance(decision, str) else "invalid",
            "error": "; ".join(f"order {o}: skipped by the annotator" for o in sorted(skipped)) or None,
            "judge": judge, "template_version": TEMPLATE_VERSION[kind], "prompt_tokens": 0,
            "completion_tokens": 0, "cached": True})
    out = pd.DataFrame(records, columns=RANKINGS_COLUMNS)
    out["valid"] = out["valid"].astype(bool)
    return out


def annotator_summary(store: Any) -> pd.DataFrame:
    """One row per human judge and kind in the store: annotator, kind, answered, skipped."""
    summary = _with_store(store, lambda st: st.summary())
    summary = summary[summary["judge"].str.startswith(PREFIX)
                      & summary["template_version"].isin(list(TEMPLATE_VERSION.values()))]
    kinds = {v: k for k, v in TEMPLATE_VERSION.items()}
    rows = {}
    for r in summary.itertuples():
        key = (r.judge[len(PREFIX):], kinds[r.template_version])
        rec = rows.setdefault(key, {"annotator": key[0], "kind": key[1], "answered": 0, "skipped": 0})
        rec["answered" if r.status == "ok" else "skipped"] += int(r.n)
    return pd.DataFrame(list(rows.values()), columns=["annotator", "kind", "answered", "skipped"])


def known_annotators(store: Any, kind: str | None = None) -> list[str]:
    """The names of the human annotators with answers in ``store`` (of ``kind`` if given), sorted."""
    s = annotator_summary(store)
    if kind is not None:
        s = s[s["kind"] == check_kind(kind)]
    return sorted(set(s["annotator"]))


def all_feedback(store: Any, annotators: list[str] | None = None) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """``{name: (ratings, rankings)}`` for every human annotator in ``store`` (or those named) who has at least
    one valid rating and one valid ranking — the input :func:`sflib.consistency.agreement.human_vs_ai` and
    :func:`sflib.consistency.compare_annotators` take."""
    names = [a for a in (annotators or known_annotators(store))]
    out = {}
    for name in names:
        r, k = human_feedback(store, name, "ratings"), human_feedback(store, name, "rankings")
        if r["valid"].any() and k["valid"].any():
            out[name] = (r, k)
    return out
