"""The paper's own numbers, each with where it is stated, for the notebooks to show beside ours.

Paper: Bansal, Dang, Grover, "Peering Through Preferences: Unraveling Feedback Acquisition for
Aligning Large Language Models", arXiv:2308.15812v3 (5 Feb 2024), https://arxiv.org/abs/2308.15812v3.

Only numbers read in the paper's text are listed, each with the place it is stated and what the
paper says there (paraphrased). Topics whose numbers have not been transcribed yet return an empty table (with the
same columns), so a notebook shows "no paper number" rather than a guess. To add a number, add a
:class:`PaperNumber` to ``NUMBERS`` with its exact location.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

ARXIV = "arXiv:2308.15812v3"
URL = "https://arxiv.org/abs/2308.15812v3"

TOPICS = ("data", "ratings", "rankings", "consistency", "reward_models", "best_of_n", "evaluation")


@dataclass(frozen=True)
class PaperNumber:
    topic: str
    quantity: str   # what it is, with its unit, as the notebooks name it
    value: float
    source: str     # where in the paper: section / table / figure / abstract
    note: str       # what the paper says there, paraphrased


NUMBERS: tuple[PaperNumber, ...] = (
    PaperNumber("consistency", "disagreement, human annotators (%)", 60.0, f"{ARXIV}, Abstract",
                "preferences inferred from ratings and from rankings disagree in 60% of cases, for human and for "
                "AI annotators alike"),
    PaperNumber("consistency", "disagreement, AI annotators (%)", 60.0, f"{ARXIV}, Abstract",
                "preferences inferred from ratings and from rankings disagree in 60% of cases, for human and for "
                "AI annotators alike"),
)

@dataclass(frozen=True)
class PaperStatement:
    """A finding the paper's abstract states in words (no number), for the study report to set beside ours."""
    topic: str      # the stage whose findings answer it
    statement: str  # what the paper says, paraphrased
    source: str


#: the abstract's findings; only the abstract of the paper is reachable here, so nothing else is listed
STATEMENTS: tuple[PaperStatement, ...] = (
    PaperStatement("consistency", "Preferences inferred from ratings and from rankings disagree in about 60% of "
                   "cases, for human and for AI annotators alike.", f"{ARXIV}, Abstract"),
    PaperStatement("evaluation", "The policy aligned with rankings feedback is preferred under a ranking-based "
                   "evaluation protocol, but not under a rating-based one: the evaluation protocol decides which "
                   "feedback form looks better.", f"{ARXIV}, Abstract"),
)

COLUMNS = ["quantity", "paper_value", "source"]


def numbers(topic: str | None = None) -> list[PaperNumber]:
    """The transcribed numbers (of one topic)."""
    if topic is not None and topic not in TOPICS:
        raise KeyError(f"unknown topic {topic!r}; topics: {', '.join(TOPICS)}")
    return [n for n in NUMBERS if topic is None or n.topic == topic]


def table(topic: str | None = None) -> pd.DataFrame:
    """The paper's numbers on ``topic`` (all topics when None): columns quantity, paper_value, source.

    Empty (same columns) for a topic with nothing transcribed; ``KeyError`` for an unknown topic.
    What the paper says at each source is in ``.attrs["notes"]`` (quantity -> paraphrase).
    """
    rows = numbers(topic)
    df = pd.DataFrame([{"quantity": n.quantity, "paper_value": n.value, "source": n.source} for n in rows],
                      columns=COLUMNS)
    df.attrs["notes"] = {n.quantity: n.note for n in rows}
    return df


def paper_vs_ours(ours: Mapping[str, float], topic: str | None = None, *, digits: int | None = 1) -> pd.DataFrame:
    """One row per quantity: the paper's value (where it states one), ours, and where the paper says it.

    ``ours`` maps a quantity name (as in :func:`table`, e.g. ``"disagreement, AI
    annotators (%)"``) to this run's value, or to ``(value, low, high)`` for an interval.
    Quantities the paper does not state get ``paper_value`` NaN and source "not stated in the
    paper"; paper quantities we have no number for get ``ours`` NaN. Columns: quantity,
    paper_value, ours, ours_low, ours_high, source. Our values are rounded to ``digits`` (None: as given).
    """
    paper = table(topic).set_index("quantity")
    rows = []
    for q, v in ours.items():
        value, low, high = (tuple(v) + (None, None))[:3] if isinstance(v, (tuple, list)) else (v, None, None)
        rows.append({"quantity": q, "paper_value": paper["paper_value"].get(q, float("nan")),
                     "ours": float(value) if value is not None else float("nan"),
                     "ours_low": float(low) if low is not None else float("nan"),
                     "ours_high": float(high) if high is not None else float("nan"),
                     "source": paper["source"].get(q, "not stated in the paper")})
    for q, r in paper.iterrows():
        if q not in ours:
            rows.append({"quantity": q, "paper_value": r["paper_value"], "ours": float("nan"),
                         "ours_low": float("nan"), "ours_high": float("nan"), "source": r["source"]})
    df = pd.DataFrame(rows, columns=["quantity", "paper_value", "ours", "ours_low", "ours_high", "source"])
    if digits is not None:
        df[["ours", "ours_low", "ours_high"]] = df[["ours", "ours_low", "ours_high"]].round(digits)
    return df


def statements(topic: str | None = None) -> list[PaperStatement]:
    """The abstract's findings stated in words (of one topic)."""
    return [s for s in STATEMENTS if topic is None or s.topic == topic]


__all__ = ["ARXIV", "URL", "TOPICS", "PaperNumber", "NUMBERS", "PaperStatement", "STATEMENTS", "numbers",
           "statements", "table", "paper_vs_ours"]
