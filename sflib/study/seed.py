"""Seeding a study's stages from the paper's released data (``data/canonical/``).

A study that lists a stage in ``seeded_from_data`` gets that stage's output copied from the
vendored tables instead of computed; its manifest says ``seeded_from``. What each stage gets:

- ``responses``: ``sample_responses`` (20 SuperNI instructions x 5 Alpaca-7B responses, 98 distinct);
- ``ratings`` / ``rankings``: the recorded GPT-3.5-Turbo feedback on them (``sample_ratings``, ``sample_rankings``);
- ``best_of_n``: the best-of-64 outputs chosen by each reward model (``ratings_outputs.json``,
  ``rankings_outputs.json``) and the text-davinci-003 reference (``reference_outputs.json``),
  AlpacaEval layout; the 64 samples themselves were not released, so there is no ``samples`` table;
- ``evaluation``: the recorded evaluation judgments (``recorded_ratings_reference``,
  ``recorded_ratings_ratings_rm``, ``recorded_rankings_reference_vs_ratings_rm``), which notebook
  07 turns into win rates.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from ..core import catalog
from ..core import data as d
from .. import io as sfio
from .config import SEEDABLE

PAPER_JUDGE = "gpt-3.5-turbo (paper)"
PAPER_POLICY = "alpaca-7b (paper)"
#: why a seeded item counts as failed: the paper's run has no answer for it
NOT_RECORDED = "not recorded (the paper's run has no answer for it)"

#: stage -> {table name in the study folder: canonical table name}
SEED_TABLES = {
    "responses": {"responses": "sample_responses"},
    "ratings": {"ratings": "sample_ratings"},
    "rankings": {"rankings": "sample_rankings"},
    "best_of_n": {"ratings_outputs": "eval_ratings_rm_outputs", "rankings_outputs": "eval_rankings_rm_outputs",
                  "reference_outputs": "eval_reference_outputs"},
    "evaluation": {"recorded_ratings_reference": "eval_ratings_reference",
                   "recorded_ratings_ratings_rm": "eval_ratings_ratings_rm",
                   "recorded_rankings_reference_vs_ratings_rm": "eval_rankings_reference_vs_ratings_rm"},
}
#: tables written in AlpacaEval's model_outputs layout (.json) rather than JSONL
_JSON_TABLES = {"ratings_outputs", "rankings_outputs", "reference_outputs"}
_INPUTS = {"responses": [], "ratings": ["responses"], "rankings": ["responses"], "best_of_n": [],
           "evaluation": ["best_of_n"]}


def canonical(name: str):
    """A vendored canonical table (``data/canonical/<name>.jsonl``)."""
    return sfio.read_table(catalog.canonical_path(name))


def seed_stage(study, stage: str, force: bool = False) -> Path | None:
    """Copy ``stage``'s released output into the study folder (upstream seeded stages first).

    Returns the stage folder, or None when the stage was already written and ``force`` is False.
    """
    if stage not in SEEDABLE:
        raise ValueError(f"stage {stage!r} cannot be seeded from data/ (seedable: {', '.join(SEEDABLE)})")
    if stage not in study.config.seeded_from_data:
        raise ValueError(f"study {study.name}: stage {stage!r} is not listed in seeded_from_data")
    if study.manifest(stage) is not None and not force:
        return None
    inputs = [up for up in _INPUTS[stage] if up in study.config.seeded_from_data]
    for up in inputs:
        if study.manifest(up) is None:
            seed_stage(study, up)
    hub = study.config.seeded_from_hub
    if hub is not None and stage in hub.stages:  # the paper's full released feedback (sflib.io.hub)
        from ..io import hub as hf

        frames, sources, hub_note = hf.stage_tables(stage, hub.repo, hub.revision)
    else:
        frames = {name: canonical(src) for name, src in SEED_TABLES[stage].items()}
        sources, hub_note = [f"data/canonical/{src}.jsonl" for src in SEED_TABLES[stage].values()], None
    counts = {name: len(df) for name, df in frames.items()}
    counts["n"] = len(next(iter(frames.values())))
    if stage in ("ratings", "rankings", "evaluation"):  # recorded answers are all valid; lost ones are absent
        counts.update(valid=sum(len(df) for df in frames.values()), invalid=0, failed=0)
    if stage in ("ratings", "rankings") and "responses" in study.config.seeded_from_data:
        counts.update(_feedback_counts(stage, frames[stage]))
    notes = {
        "responses": "the paper's Alpaca-7B responses (98 distinct of 100)",
        "ratings": "the paper's recorded GPT-3.5-Turbo ratings (99 rows; 97 of the 98 distinct responses rated, "
                   "2 later ratings with another score left out)",
        "rankings": "the paper's recorded GPT-3.5-Turbo rankings (118 pairs ranked: 116 of the 192 pairs of distinct "
                    "responses and 2 of a response with an identical copy of itself)",
        "best_of_n": "the paper's best-of-64 Alpaca-7B outputs per reward model and the text-davinci-003 "
                     "reference; the 64 samples per instruction were not released",
        "evaluation": "the paper's recorded GPT-3.5-Turbo evaluation judgments (partial)",
    }[stage] if hub_note is None else hub_note
    judge = PAPER_JUDGE if stage in ("ratings", "rankings", "evaluation") else None
    policy = PAPER_POLICY if stage in ("responses", "best_of_n") else None
    tables = {n: df for n, df in frames.items() if n not in _JSON_TABLES}
    with tempfile.TemporaryDirectory(prefix=".seed-", dir=_tmp_parent(study)) as tmp:
        files = []
        for name, df in frames.items():
            if name in _JSON_TABLES:
                files.append(d.write_model_outputs(df, Path(tmp) / f"{name}.json"))
        return study.save(stage, tables=tables, files=files, counts=counts, inputs=inputs, judge=judge,
                          policy=policy, notes=notes, seeded_from=sources)


def _feedback_counts(stage: str, table) -> dict:
    """Seeded ratings / rankings counted by the one rule of :mod:`sflib.feedback.clean` — the counts notebooks
    02–05 show: ``valid`` = responses rated / pairs ranked (duplicates left out, first kept), ``failed`` = items
    the paper's run has no answer for, ``n`` = their sum; ``rows`` and ``left_out`` say what the table holds."""
    from ..feedback import clean

    responses = canonical(SEED_TABLES["responses"]["responses"])
    kept, ex = (clean.clean_ratings if stage == "ratings" else clean.clean_rankings)(table, responses)
    missing = next(v for k, v in ex.items() if k.startswith("missing"))
    return {"n": len(kept) + missing, "valid": len(kept), "invalid": 0, "failed": missing, "rows": len(table),
            "reasons": {NOT_RECORDED: missing} if missing else {},
            "left_out": {k: v for k, v in ex.items() if v and not k.startswith("missing")}}


def _tmp_parent(study) -> Path:
    study.folder.mkdir(parents=True, exist_ok=True)
    return study.folder


def seed(study, force: bool = False) -> list[str]:
    """Seed every stage the study lists in ``seeded_from_data``; returns the stages written."""
    written = []
    for stage in SEEDABLE:
        if stage in study.config.seeded_from_data and seed_stage(study, stage, force=force) is not None:
            written.append(stage)
    return written
