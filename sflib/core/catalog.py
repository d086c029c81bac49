"""Every vendored data file in one place, by the role it plays in the study.

``catalog.path(role)`` is the canonical table (``data/canonical/<name>.jsonl``, written by
``python -m sflib convert-original``) where the role has one, else the original file;
``catalog.path(role, original=True)`` is always the released file under ``data/original``.
:func:`sflib.io.read_role` reads it with the reader of its kind, and
:func:`table` lists every role with its files.

Roles (``feedback.*`` = the 20-instruction feedback sample; ``eval.*`` = the AlpacaEval evaluation):

| role | kind | what |
| superni.instructions | instructions | SuperNI-v2 instructions (1,000) |
| feedback.responses | responses | 20 instructions x 5 Alpaca-7B responses |
| feedback.ratings / feedback.rankings | ratings / rankings | the paper's recorded GPT-3.5 feedback on them |
| feedback.rating_requests / feedback.ranking_requests | responses / pairs | the original request CSVs |
| feedback.rankings_for_rm | - | the original rankings-RM training JSON |
| eval.reference_outputs | model_outputs | text-davinci-003 AlpacaEval reference outputs (805) |
| eval.ratings_rm_outputs / eval.rankings_rm_outputs | model_outputs | best-of-64 outputs of each RM (553) |
| eval.ratings.reference / eval.ratings.ratings_rm | ratings | recorded evaluation ratings |
| eval.rankings.reference_vs_ratings_rm | rankings | recorded evaluation rankings (davinci (a) vs policy (b)) |
| eval.rating_requests.reference / .ratings_rm, eval.ranking_requests | responses / pairs | request CSVs |
| licence | - | the MIT licence of the released data |
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .paths import data_dir


@dataclass(frozen=True)
class Entry:
    role: str
    kind: str | None  # the sflib.io reader that reads it (None: not a table)
    original: str  # relative to data/original
    canonical: str | None = None  # table name in data/canonical
    description: str = ""


_ENTRIES = [
    Entry("superni.instructions", "instructions", "instructions/natural_instructions.json",
          "superni_instructions", "SuperNI-v2 instructions"),
    Entry("feedback.responses", "responses", "alpaca_generation/sample_generation.json",
          "sample_responses", "feedback sample: 20 instructions x 5 Alpaca-7B responses"),
    Entry("feedback.ratings", "ratings", "alpaca_generation/feedback_ratings_sample_generation.csv",
          "sample_ratings", "recorded GPT-3.5 ratings of the feedback sample"),
    Entry("feedback.rankings", "rankings", "alpaca_generation/feedback_rankings_sample_generation.csv",
          "sample_rankings", "recorded GPT-3.5 rankings of the feedback sample"),
    Entry("feedback.rating_requests", "responses", "alpaca_generation/ratings_sample_generation.csv",
          None, "original ratings request CSV (instruction,input,response)"),
    Entry("feedback.ranking_requests", "pairs", "alpaca_generation/rankings_sample_generation.csv",
          None, "original rankings request CSV (instruction,input,response1,response2)"),
    Entry("feedback.rankings_for_rm", None, "alpaca_generation/feedback_rankings_for_rm_sample.json",
          None, "original rankings-RM training layout"),
    Entry("eval.reference_outputs", "model_outputs", "inference_model_outputs/davinci003.json",
          "eval_reference_outputs", "AlpacaEval reference outputs (text-davinci-003)"),
    Entry("eval.ratings_rm_outputs", "model_outputs", "inference_model_outputs/ratings_alpaca.json",
          "eval_ratings_rm_outputs", "best-of-64 Alpaca-7B outputs selected by the ratings RM"),
    Entry("eval.rankings_rm_outputs", "model_outputs", "inference_model_outputs/rankings_alpaca.json",
          "eval_rankings_rm_outputs", "best-of-64 Alpaca-7B outputs selected by the rankings RM"),
    Entry("eval.ratings.reference", "ratings", "inference_model_outputs/feedback_ratings_davinci_for_llm_eval.csv",
          "eval_ratings_reference", "recorded GPT-3.5 ratings of the reference outputs"),
    Entry("eval.ratings.ratings_rm", "ratings", "inference_model_outputs/feedback_ratings_ratings_for_llm_eval.csv",
          "eval_ratings_ratings_rm", "recorded GPT-3.5 ratings of the ratings-RM policy's outputs"),
    Entry("eval.rankings.reference_vs_ratings_rm", "rankings",
          "inference_model_outputs/feedback_rankings_davincivsratings_for_llm_eval.csv",
          "eval_rankings_reference_vs_ratings_rm", "recorded GPT-3.5 rankings, reference (a) vs ratings-RM policy (b)"),
    Entry("eval.rating_requests.reference", "responses", "inference_model_outputs/davinci_for_llm_eval.csv",
          None, "original rating-protocol requests for the reference outputs"),
    Entry("eval.rating_requests.ratings_rm", "responses", "inference_model_outputs/ratings_for_llm_eval.csv",
          None, "original rating-protocol requests for the ratings-RM policy"),
    Entry("eval.ranking_requests", "pairs", "inference_model_outputs/rankings_for_llm_eval.csv",
          None, "original ranking-protocol requests (reference as response1)"),
    Entry("licence", None, "LICENSE", None, "MIT licence of the released data"),
]
ENTRIES: dict[str, Entry] = {e.role: e for e in _ENTRIES}
ROLES = tuple(ENTRIES)
#: canonical table name -> role
BY_TABLE = {e.canonical: e.role for e in _ENTRIES if e.canonical}


def entry(role: str) -> Entry:
    if role not in ENTRIES:
        raise KeyError(f"unknown data role {role!r}; choose one of: {', '.join(ROLES)}")
    return ENTRIES[role]


def original_dir() -> Path:
    return data_dir() / "original"


def canonical_dir() -> Path:
    return data_dir() / "canonical"


def canonical_path(name: str) -> Path:
    """``data/canonical/<name>.jsonl``, with a hint to regenerate it when missing."""
    path = canonical_dir() / f"{name}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run `python -m sflib convert-original` to regenerate data/canonical")
    return path


def original_path(role: str) -> Path:
    """The released file of ``role`` under ``data/original``."""
    path = original_dir() / entry(role).original
    if not path.exists():
        raise FileNotFoundError(f"{path} ({role}) is missing from the vendored data; restore data/original from git")
    return path


def path(role: str, original: bool = False) -> Path:
    """The file of ``role``: its canonical table (default, where it has one) or the released original."""
    e = entry(role)
    if original or e.canonical is None:
        return original_path(role)
    return canonical_path(e.canonical)


def table() -> pd.DataFrame:
    """One row per role: kind, canonical and original file (relative to ``data/``), description."""
    return pd.DataFrame([{"role": e.role, "kind": e.kind or "", "canonical": f"canonical/{e.canonical}.jsonl"
                          if e.canonical else "", "original": f"original/{e.original}", "description": e.description}
                         for e in _ENTRIES])
