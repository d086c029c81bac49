"""Notebook 08's findings for the study report: the human answers in the study's annotation store, read
without opening an annotation session (no lease is taken, nothing is written).

Who answered (answered / skipped per annotator and kind), each annotator's ratings-vs-rankings consistency
beside the AI judge's on the same pairs (:func:`sflib.consistency.agreement.human_vs_ai`), and agreement
between annotators on the items two or more judged. With no human answer yet the section says so and
how to collect them.
"""
from __future__ import annotations

import math

import pandas as pd

from ..core.findings import Estimate, Findings


def findings(study, *, bootstrap: int = 1000, seed: int = 0) -> Findings:
    """Stage 08's findings for ``study`` (its annotation store; the AI judge from its 02/03 stages)."""
    from ..consistency import agreement
    from ..feedback.store import AnnotationStore
    from .feedback import all_feedback, annotator_summary
    from .headline import overlap_agreement
    from .notebook import _ai
    from .sources import study_material

    f = Findings("08", "Human feedback")
    path = study.store_path
    if not path.exists():
        f.headline = f"No human answers: the study has no annotation store yet ({path}); notebook 08 collects them."
        return f
    store = AnnotationStore(path)
    try:
        summary = annotator_summary(store)
        feedback = all_feedback(store)
    finally:
        store.close()
    if not len(summary):
        f.headline = ("No human answers in the annotation store yet: open notebook 08 in JupyterLab and annotate "
                      "(each person with their own `annotator` name).")
        return f
    f.tables["who answered"] = summary
    for r in summary.itertuples():
        f.counts[f"{r.annotator}: {r.kind} answered"] = int(r.answered)
    try:
        ai = _ai(study_material(study.spec or study.name))
    except ValueError:  # the study's 01-03 are not run: the humans alone
        ai = {}
    table = agreement.human_vs_ai(feedback, ai, bootstrap=bootstrap, seed=seed) if feedback else pd.DataFrame()
    if len(table):
        f.tables["beside the AI judge"] = table
        for r in table.itertuples():
            if r.n_compared and not math.isnan(r.consistency):
                f.estimates.append(Estimate(f"{r.judge} ({r.who}, {r.pairs} pairs): ratings and rankings agree",
                                            100 * r.consistency, 100 * r.ci_low, 100 * r.ci_high, n=int(r.n_compared),
                                            unit="%", method="bootstrap 95%"))
    if len(feedback) >= 2:
        f.tables["agreement between annotators"] = overlap_agreement(feedback)
    else:
        f.notes.append("Agreement between annotators needs two or more with overlapping items (notebook 08's "
                       "`team` and `overlap`).")
    humans = [e for e in f.estimates if "(human," in e.name]
    f.headline = (f"{len(summary['annotator'].unique())} human annotator(s), {int(summary['answered'].sum()):,} answers; "
                  + ("; ".join(f"{e.name.split(' (')[0]}: ratings and rankings agree on {e.value:.1f}% of {e.n} pairs"
                               for e in humans) if humans else
                     "no annotator has both a valid rating and a valid ranking of one pair yet") + ".")
    return f


__all__ = ["findings"]
