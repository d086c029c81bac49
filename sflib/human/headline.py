"""The paper's headline table for the consistency notebook: humans beside the AI judge, and their agreement.

One call, for a single cell of notebook 04::

    table, fig, note = human.consistency_beside_ai(study_or_store, ai_ratings, ai_rankings)
    display(table); display(Markdown(note))
    if fig is not None:
        plots.save_figure(fig, "04_humans_beside_ai", figures_dir)

``table`` is :func:`sflib.consistency.agreement.human_vs_ai` (one row per human annotator in the store, the AI judge
over all its pairs and over the same pairs the humans ranked; ``n_compared``, ``consistency``,
``ci_low`` / ``ci_high``); when two or more annotators judged common items, their agreement
(:func:`sflib.consistency.agreement.agreement_table`: Cohen's kappa, Fleiss' kappa, Krippendorff's alpha with
``n_items``) is ``table.attrs["agreement"]``, the right panel of the figure and a line of ``note``.
With no human answers in the store: an empty table, no figure and :data:`NO_HUMANS`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..consistency import agreement
from ..feedback.store import AnnotationStore
from .feedback import all_feedback

NO_HUMANS = "no human feedback yet: annotate in notebook 08"
HEADLINE_COLUMNS = ["judge", "who", "pairs", "n_compared", "consistency", "ci_low", "ci_high", "disagreement",
                    "consistency_excluding_ties", "kappa", "ratings_tie_rate", "rankings_tie_rate",
                    "n_skipped_missing_rating"]
AGREEMENT_COLUMNS = ["kind", "measure", "annotators", "n_items", "value", "library"]


def _store_of(study_or_store: Any) -> AnnotationStore | Path | None:
    """An open store, or the path of one; ``None`` when the path does not exist (nothing to read, nothing created)."""
    if isinstance(study_or_store, AnnotationStore):
        return study_or_store
    path = getattr(study_or_store, "store_path", None)  # a sflib.study.Study
    path = Path(path if path is not None else study_or_store)
    return path if path.exists() else None


def _ai_name(ai_ratings: pd.DataFrame, ai_name: str | None) -> str:
    if ai_name:
        return ai_name
    judges = ai_ratings.get("judge") if hasattr(ai_ratings, "get") else None
    if judges is not None and len(judges.dropna()):
        return str(judges.dropna().iloc[0])
    return "AI judge"


def overlap_agreement(feedback: dict[str, tuple[pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    """Agreement of the annotators in ``feedback`` on the items two or more of them judged, ratings then
    rankings (columns :data:`AGREEMENT_COLUMNS`); rows with ``n_items`` 0 are left out; empty for one annotator."""
    if len(feedback) < 2:
        return pd.DataFrame(columns=AGREEMENT_COLUMNS)
    parts = [agreement.agreement_table({n: fb[i] for n, fb in feedback.items()}, kind).assign(kind=kind)
             for i, kind in enumerate(("ratings", "rankings"))]
    out = pd.concat(parts, ignore_index=True)[AGREEMENT_COLUMNS]
    return out[out["n_items"] > 0].reset_index(drop=True)


def _pct(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{100 * x:.0f}%"


def _note(table: pd.DataFrame, agree: pd.DataFrame, names: Sequence[str]) -> str:
    lines = []
    for r in table.itertuples():
        if r.n_compared == 0:
            lines.append(f"{r.judge} ({r.who}): no pair with both ratings and a decision")
            continue
        where = {"own": "own pairs", "all": "all its pairs"}.get(r.pairs, "the pairs the humans ranked")
        lines.append(f"{r.judge} ({r.who}, {where}): consistency {_pct(r.consistency)} "
                     f"[95% CI {_pct(r.ci_low)}–{_pct(r.ci_high)}], n={r.n_compared}")
    if len(names) >= 2:
        if agree.empty:
            lines.append(f"agreement: {', '.join(names)} judged no common items (no overlap), so no agreement figure")
        for r in agree.itertuples():
            value = "n/a" if pd.isna(r.value) else f"{r.value:.2f}"
            lines.append(f"agreement on {r.kind} ({r.annotators}): {r.measure} = {value}, n={r.n_items}")
    return "\n".join(lines)


def consistency_beside_ai(study_or_store: Any, ai_ratings: pd.DataFrame | None = None,
                          ai_rankings: pd.DataFrame | None = None, *, ai_name: str | None = None,
                          annotators: Sequence[str] | None = None, bootstrap: int = 1000,
                          seed: int | None = 0) -> tuple[pd.DataFrame, Any, str]:
    """Ratings-vs-rankings consistency of every human annotator in the store beside the AI judge's.

    ``study_or_store``: a :class:`sflib.study.Study` (its ``store_path``), an :class:`AnnotationStore`
    or the path of one (a path that does not exist counts as a store with no human answers; no file is
    created). ``ai_ratings`` / ``ai_rankings``: the AI judge's feedback tables (``rate()`` / ``rank()``
    columns), named ``ai_name`` (default: their ``judge`` column). ``annotators``: only these humans.

    Returns ``(table, figure, note)``: ``table`` as :func:`sflib.consistency.agreement.human_vs_ai` (n and 95% bootstrap
    CI per row; ``attrs["agreement"]`` the annotators' agreement on their overlap, ``attrs["reports"]`` the
    consistency reports), a matplotlib figure (consistency bars, and agreement bars when two or more
    annotators overlap; the caller saves it with ``plots.save_figure``), and a note with one line per row
    and per agreement measure. No human answers: ``(empty table, None, NO_HUMANS)``.
    """
    store = _store_of(study_or_store)
    feedback = all_feedback(store, list(annotators) if annotators else None) if store is not None else {}
    if not feedback:
        empty = pd.DataFrame(columns=HEADLINE_COLUMNS)
        empty.attrs["agreement"] = pd.DataFrame(columns=AGREEMENT_COLUMNS)
        return empty, None, NO_HUMANS
    if (ai_ratings is None) != (ai_rankings is None):
        raise ValueError("consistency_beside_ai: give both ai_ratings and ai_rankings (or neither)")
    ai = {} if ai_ratings is None else {_ai_name(ai_ratings, ai_name): (ai_ratings, ai_rankings)}
    table = agreement.human_vs_ai(feedback, ai, bootstrap=bootstrap, seed=seed)
    reports = table.attrs.get("reports", {})
    table = table.reindex(columns=HEADLINE_COLUMNS + [c for c in table.columns if c not in HEADLINE_COLUMNS])
    table.attrs["reports"] = reports
    agree = overlap_agreement(feedback)
    table.attrs["agreement"] = agree
    from .figures import plot_consistency_beside_ai

    fig = plot_consistency_beside_ai(table, agree)
    return table, fig, _note(table, agree, list(feedback))
