"""Run (or read) stages 01–03 of a study: what notebooks 01, 02 and 03 call before they show their findings.

Each function acquires what the study asks for — or, for a stage seeded from the paper's data, reads it —
saves it with its manifest, and returns the table. Their findings (counts by the one counting rule,
estimates, figures) are then :func:`sflib.generation.findings.findings` and
:mod:`sflib.feedback.findings`. Nothing here prints a number those functions do not also report.
"""
from __future__ import annotations

import pandas as pd

from . import acquire


def responses(study, quick: bool = False, progress: bool = False) -> pd.DataFrame:
    """Notebook 01: sample ``k`` responses per instruction from the study's policy and save the
    ``responses`` stage — or read the seeded ones. A failing server does not raise: the stage is saved
    with the reason, and the answers that arrived stay in the annotation store."""
    if "responses" in study.config.seeded_from_data:
        return study.read("responses")
    policy = study.config.policy
    table, instructions, counts = acquire.sample_responses(study, quick=quick, progress=progress)
    study.save("responses", tables={"responses": table, "instructions": instructions}, counts=counts,
               policy=policy.name, template_version=f"generate-v1:{policy.prompt_style}",
               notes=acquire.outcome_line(counts, "responses") + (" (quick mode)" if quick else ""))
    return table


def demo(study, quick: bool = False, instructions: int = 4) -> pd.DataFrame:
    """Notebook 01's demonstration (paper study): a few SmolLM2 samples, not saved; an empty table when the
    study samples its own responses or ``instructions`` is 0."""
    if "responses" not in study.config.seeded_from_data or not instructions:
        return pd.DataFrame(columns=["instruction", "sample", "response", "finish_reason"])
    out = acquire.demo_responses(study, n=2 if quick else instructions, k=2 if quick else 3,
                                 max_new_tokens=24 if quick else 48)
    out = out.assign(instruction=out["instruction"].str.slice(0, 80), response=out["response"].str.slice(0, 200))
    return out[["instruction", "sample", "response", "finish_reason"]].reset_index(drop=True)


def judges(study, kind: str) -> pd.DataFrame:
    """The options each judge of a feedback stage runs with (empty for a seeded stage)."""
    if kind in study.config.seeded_from_data:
        return pd.DataFrame(columns=["name"]).set_index("name")
    fb = study.config.feedback
    names = [fb.judge, *fb.extra_judges] if kind == "ratings" else [fb.judge]
    return pd.DataFrame([acquire.options(acquire.judge(n)) for n in names]).set_index("name")


def ratings(study, progress: bool = False) -> pd.DataFrame:
    """Notebook 02: rate notebook 01's responses with the feedback judge (and ``extra_judges``, saved as the
    ``extra_ratings`` table) and save the ``ratings`` stage — or read the seeded ratings."""
    if "ratings" in study.config.seeded_from_data:
        return study.read("ratings")
    from ..feedback.ratings import template_version

    fb = study.config.feedback
    table = acquire.read(study, "responses")
    js = [acquire.judge(name) for name in [fb.judge, *fb.extra_judges]]
    runs = [acquire.ask(study, "ratings", table, j, progress=progress) for j in js]
    extra = {"extra_ratings": pd.concat(runs[1:], ignore_index=True)} if len(runs) > 1 else {}
    counts = acquire.outcome(runs[0])
    study.save("ratings", tables={"ratings": runs[0], **extra}, counts=counts, inputs=["responses"],
               judge=js[0].name, template_version=template_version(fb.rating_template),
               notes=acquire.outcome_line(counts, "ratings"))
    return runs[0]


def rankings(study, progress: bool = False) -> pd.DataFrame:
    """Notebook 03: rank every pair of notebook 01's responses (both orders when ``both_orders``) and save
    the ``rankings`` stage — or read the seeded rankings."""
    if "rankings" in study.config.seeded_from_data:
        return study.read("rankings")
    from ..feedback.rankings import make_pairs
    from ..feedback.ratings import template_version

    fb = study.config.feedback
    j = acquire.judge(fb.judge)
    table = acquire.ask(study, "rankings", make_pairs(acquire.read(study, "responses")), j, progress=progress)
    counts = acquire.outcome(table)
    study.save("rankings", tables={"rankings": table}, counts=counts, inputs=["responses"], judge=j.name,
               template_version=template_version(fb.ranking_template), notes=acquire.outcome_line(counts, "ranked pairs"))
    return table


__all__ = ["responses", "demo", "judges", "ratings", "rankings"]
