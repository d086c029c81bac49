"""Human feedback in JupyterLab: a human is a judge like any other (``human:<name>``).

- items and assignment: :func:`rating_items`, :func:`ranking_items`, :func:`assign` (several
  annotators, an overlap share, per-annotator random order, pair order recorded);
- the widget: ``HumanAnnotator(items, annotator="alice", store=..., kind="ratings"|"rankings").widget``
  (every click or key is written to the annotation store at once, keys typed fast are queued in order;
  reopening resumes);
- notebook 08's calls: :mod:`sflib.human.notebook` (``open_annotation``, ``analyse``);
- the tables: :func:`human_feedback` (the columns of ``rate()`` / ``rank()``), :func:`known_annotators`,
  :func:`import_human` / :func:`export_human` (CSV / JSONL as annotation tools write them);
- agreement and humans vs the AI judge: :mod:`sflib.consistency.agreement`; for the consistency notebook in one call:
  :func:`consistency_beside_ai` (table, figure, note).

See ``docs/human.md``.
"""
from .feedback import (RANKINGS_COLUMNS, RATINGS_COLUMNS, all_feedback, annotator_summary, human_feedback,
                       known_annotators)
from .io import export_human, import_human
from .headline import NO_HUMANS, consistency_beside_ai, overlap_agreement
from .items import annotator_queue, assign, items_hash, make_items, ranking_items, rating_items
from .lease import AnnotatorBusy, judge_name, normalise_name
from .session import AnnotationSession, instructions
from .sources import simulated_answers, study_material
from . import figures, notebook  # sflib.human.figures.plot_human_vs_ai, sflib.human.notebook


def __getattr__(name):  # the widget imports ipywidgets only when used
    if name == "HumanAnnotator":
        from .widget import HumanAnnotator

        return HumanAnnotator
    raise AttributeError(f"module 'sflib.human' has no attribute {name!r}")


__all__ = ["AnnotationSession", "NO_HUMANS", "consistency_beside_ai", "overlap_agreement", "all_feedback", "AnnotatorBusy",
           "HumanAnnotator", "RANKINGS_COLUMNS", "RATINGS_COLUMNS",
           "annotator_queue", "annotator_summary", "assign", "export_human", "human_feedback", "import_human",
           "instructions", "items_hash", "judge_name", "known_annotators", "make_items", "normalise_name",
           "ranking_items", "rating_items", "simulated_answers", "study_material"]
