"""Agreement between annotators, and humans beside the AI judge.

Between annotators (maintained implementations, nothing re-derived here):

- :func:`cohen_kappa` — two annotators: :func:`sflib.core.stats.cohen_kappa`, the one kappa of sflib
  (``sklearn.metrics.cohen_kappa_score``; for ratings the quadratic-weighted kappa is the ordinal one);
- :func:`fleiss_kappa` — several annotators, items judged by all of them
  (``statsmodels.stats.inter_rater.fleiss_kappa``; categories are nominal);
- :func:`krippendorff_alpha` — several annotators, missing answers allowed (``krippendorff.alpha``;
  ``ordinal`` for 1–7 scores, ``nominal`` for a / b / equal decisions);
- :func:`agreement_table` — all of them for a set of annotators' feedback tables.

:func:`human_vs_ai` — the paper's headline table: ratings-vs-rankings consistency
(:func:`sflib.consistency.report`) for each human next to the AI judge, on all of the AI judge's
pairs and on the same pairs the humans judged.
"""
from __future__ import annotations

import itertools
import warnings
from typing import Mapping

import numpy as np
import pandas as pd

from .. import consistency
from ..core.data import DECISIONS
from ..core.stats import cohen_kappa

_CODES = {d: i for i, d in enumerate(DECISIONS)}


def _item_keys(df: pd.DataFrame, kind: str) -> pd.Series:
    if kind == "ratings":
        return df["response_id"].astype(str)
    return df["response_id_1"].astype(str) + "-" + df["response_id_2"].astype(str)


def judgment_table(frames: Mapping[str, pd.DataFrame], kind: str = "ratings") -> pd.DataFrame:
    """Items x annotators: each annotator's score (ratings) or decision (rankings); NaN where none.

    ``frames`` maps a name to a ratings / rankings table (:func:`sflib.human.human_feedback`,
    :func:`sflib.feedback.ratings.rate`, ...). Rows without a valid answer are left out; an item judged twice
    by one annotator keeps the first answer (as :mod:`sflib.consistency` does).
    """
    if kind not in ("ratings", "rankings"):
        raise ValueError(f"kind must be 'ratings' or 'rankings', got {kind!r}")
    value = "score" if kind == "ratings" else "decision"
    columns = {}
    for name, df in frames.items():
        ok = df[df[value].notna()] if value in df.columns else df.iloc[0:0]
        if "valid" in ok.columns:
            ok = ok[ok["valid"].astype(bool)]
        s = pd.Series(ok[value].to_numpy(), index=_item_keys(ok, kind).to_numpy())
        columns[name] = s[~s.index.duplicated()]
    table = pd.DataFrame(columns)
    table.index.name = "item"
    return table


def fleiss_kappa(table: pd.DataFrame) -> float:
    """Fleiss' kappa over the items (rows) every annotator (column) answered; nominal categories."""
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa as _fleiss

    complete = table.dropna()
    if len(complete) == 0 or table.shape[1] < 2:
        return float("nan")
    codes = complete.apply(lambda col: col.map(lambda v: _code(v))).to_numpy()
    counts, _ = aggregate_raters(codes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(_fleiss(counts, method="fleiss"))


def _code(v) -> float:
    if isinstance(v, str):
        return float(_CODES[v])
    return float(v)


def krippendorff_alpha(table: pd.DataFrame, level: str = "ordinal") -> float:
    """Krippendorff's alpha of an items x annotators table (missing answers allowed).

    ``level``: ``ordinal`` (scores), ``nominal`` (decisions), ``interval`` or ``ratio``. Decisions are
    coded a=0, b=1, equal=2 (only meaningful as ``nominal``).
    """
    import krippendorff

    if table.shape[1] < 2:
        return float("nan")
    data = table.apply(lambda col: col.map(lambda v: np.nan if pd.isna(v) else _code(v))).to_numpy(float).T
    pairable = (np.sum(~np.isnan(data), axis=0) >= 2).sum()
    values = np.unique(data[~np.isnan(data)])
    if pairable == 0 or len(values) < 2:
        return float("nan")
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))


def agreement_table(frames: Mapping[str, pd.DataFrame], kind: str = "ratings") -> pd.DataFrame:
    """Agreement of several annotators: Cohen's kappa for every two, Fleiss' kappa and Krippendorff's alpha
    for all. Columns: measure, annotators, n_items (judged by all annotators named), value, library."""
    table = judgment_table(frames, kind)
    rows = []
    names = list(table.columns)
    for x, y in itertools.combinations(names, 2):
        both = table[[x, y]].dropna()
        if kind == "ratings":
            rows.append(("Cohen's kappa (quadratic weights, ordinal)", f"{x} · {y}", len(both),
                         cohen_kappa(both[x], both[y], weights="quadratic", labels=range(1, 8)), "scikit-learn"))
        rows.append(("Cohen's kappa (unweighted)", f"{x} · {y}", len(both), cohen_kappa(both[x], both[y]),
                     "scikit-learn"))
    if len(names) >= 2:
        rows.append(("Fleiss' kappa (nominal)", " · ".join(names), int(len(table.dropna())), fleiss_kappa(table),
                     "statsmodels"))
        level = "ordinal" if kind == "ratings" else "nominal"
        n_pairable = int((table.notna().sum(axis=1) >= 2).sum())
        rows.append((f"Krippendorff's alpha ({level})", " · ".join(names), n_pairable,
                     krippendorff_alpha(table, level), "krippendorff"))
    return pd.DataFrame(rows, columns=["measure", "annotators", "n_items", "value", "library"])


def _row(name: str, who: str, pairs: str, rep: consistency.ConsistencyReport) -> dict:
    lo, hi = rep.ci.get("consistency", (np.nan, np.nan))
    return {"judge": name, "who": who, "pairs": pairs, "n_compared": rep.n_compared, "consistency": rep.consistency,
            "ci_low": lo, "ci_high": hi, "disagreement": 1 - rep.consistency,
            "consistency_excluding_ties": rep.consistency_excluding_ties, "kappa": rep.kappa,
            "ratings_tie_rate": rep.ratings_tie_rate, "rankings_tie_rate": rep.rankings_tie_rate,
            "n_skipped_missing_rating": rep.n_skipped_missing_rating}


def _report(ratings, rankings, name, bootstrap, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", consistency.ConsistencyWarning)
        return consistency.report(ratings, rankings, bootstrap=bootstrap, seed=seed,
                                  ratings_name=f"{name} ratings", rankings_name=f"{name} rankings")


def human_vs_ai(humans: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]],
                ai: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]] | None = None, *,
                bootstrap: int = 1000, seed: int | None = 0) -> pd.DataFrame:
    """Ratings-vs-rankings consistency for each human next to each AI judge (the paper's headline table).

    ``humans`` / ``ai`` map a name to that annotator's ``(ratings, rankings)`` tables. Each human row is
    :func:`sflib.consistency.report` of the human's own ratings against their own rankings; each AI
    judge gets a row over all its pairs and one over only the pairs the humans ranked
    (``pairs = "same as humans"``), so the comparison is like for like. ``.attrs["reports"]`` holds the
    reports. A human or AI judge with no comparable pair gets a row with ``n_compared`` 0, NaN values
and the reason in ``note``.
    """
    rows, reports, human_pairs = [], {}, set()
    for name, (ratings, rankings) in humans.items():
        human_pairs |= set(_item_keys(rankings, "rankings"))
        try:
            rep = _report(ratings, rankings, name, bootstrap, seed)
        except (ValueError, ZeroDivisionError) as e:
            rows.append({"judge": name, "who": "human", "pairs": "own", "n_compared": 0, "consistency": np.nan,
                         "note": str(e)})
            continue
        reports[name] = rep
        rows.append(_row(name, "human", "own", rep))
    for name, (ratings, rankings) in (ai or {}).items():
        try:
            rep = _report(ratings, rankings, name, bootstrap, seed)
        except (ValueError, ZeroDivisionError) as e:  # e.g. a noisy judge: no comparable pair
            rows.append({"judge": name, "who": "AI", "pairs": "all", "n_compared": 0, "consistency": np.nan,
                         "note": str(e)})
            continue
        reports[name] = rep
        rows.append(_row(name, "AI", "all", rep))
        same = rankings[_item_keys(rankings, "rankings").isin(human_pairs).to_numpy()]
        if len(same) and human_pairs:
            try:
                rep_same = _report(ratings, same, name, bootstrap, seed)
            except (ValueError, ZeroDivisionError):
                continue
            reports[f"{name} (same pairs as humans)"] = rep_same
            rows.append(_row(name, "AI", "same as humans", rep_same))
    out = pd.DataFrame(rows)
    out.attrs["reports"] = reports
    return out
