"""Pointwise protocols: one response per call. ``rating-1-7`` (the paper's, through
:func:`sflib.feedback.ratings.rate`, unchanged) and ``rubric`` (per-aspect 1–5 scores with their mean
as the aggregate, as UltraFeedback collects them)."""
from __future__ import annotations

import re
from typing import Any

import pandas as pd

from ..feedback.parsing import parse_score
from ..feedback.ratings import rate
from ..judges.base import Judge
from .base import Protocol, by_instruction, json_answer, pairs_from_scores, valid_verdicts

_RECORD = ["value", "valid", "status", "raw", "error", "prompt_tokens", "completion_tokens", "cached"]


def parse_rating(text: str | None) -> tuple[int | None, bool]:
    """A 1–7 score: ``{"score": 6}`` or any reply :func:`sflib.feedback.parsing.parse_score` reads."""
    return parse_score(text)


class Rating(Protocol):
    """The paper's 1–7 rating of one response (templates ``rating_v1``; parser
    :func:`~sflib.feedback.parsing.parse_score`, which also reads the structured ``{"score": N}``)."""

    unit = "response"
    reward_model = "regression on the 1-7 score (05's ratings RM)"

    def parse(self, text):
        return parse_rating(text)

    def items(self, responses):
        """Stage 02's requests (for the plan; :meth:`acquire` goes through :func:`rate`)."""
        from ..feedback.ratings import render_messages

        for iid, task, group in by_instruction(responses):
            for rid, text in zip(group["response_id"], group["response"]):
                yield ({"instruction_id": iid, "item": rid, "response_id": rid},
                       render_messages(str(self.template), task=task, response=text))

    def acquire(self, responses: pd.DataFrame, judge: Judge, *, store: Any = None, retry_invalid: bool = False,
                progress: bool = True) -> pd.DataFrame:
        """:func:`sflib.feedback.ratings.rate` with the protocol's template: the very requests of stage 02
        (same cache keys), so answers 02 stored are reused, not paid again."""
        table = rate(responses, judge, store=store, template=str(self.template), retry_invalid=retry_invalid,
                     progress=progress)
        out = self.from_table(table)
        out.attrs["stats"] = dict(table.attrs.get("stats", {}))
        return out

    def from_table(self, ratings: pd.DataFrame) -> pd.DataFrame:
        """The verdicts table of a ratings table (02's output, or :func:`rate`'s)."""
        out = pd.DataFrame({"protocol": self.name, "instruction_id": ratings["instruction_id"].values,
                            "item": ratings["response_id"].values, "response_id": ratings["response_id"].values})
        out["value"] = pd.to_numeric(ratings["score"], errors="coerce").values
        for col in _RECORD[1:]:
            out[col] = ratings[col].values if col in ratings else None
        if "valid" not in ratings:
            out["valid"] = out["value"].notna()
        out["verdict_format"] = [_format_of(r) for r in out["raw"]]
        return out

    def scores(self, verdicts):
        ok = valid_verdicts(verdicts)
        return pd.DataFrame({"instruction_id": ok["instruction_id"].values, "response_id": ok["item"].values,
                             "score": pd.to_numeric(ok["value"], errors="coerce").values})

    def pairs(self, verdicts):
        return pairs_from_scores(self.scores(verdicts))


def _format_of(raw) -> str:
    """``json`` when a stored reply is a JSON object, else ``text`` (how a table without the store's
    record of the request format says which it got)."""
    return "json" if isinstance(raw, str) and raw.strip().startswith("{") and json_answer(raw) else "text"


class Rubric(Protocol):
    """Per-aspect scores of one response (default aspects helpfulness, correctness, coherence,
    harmlessness on 1–5); the aggregate is their mean."""

    unit = "response"
    reward_model = "regression on the aggregate (mean of the aspects)"

    def __init__(self, spec, source=None):
        super().__init__(spec, source)
        self.aspects = [str(a) for a in spec.get("aspects") or ["helpfulness", "correctness", "coherence",
                                                                  "harmlessness"]]
        self.low, self.high = (int(x) for x in spec.get("scale", [1, 5]))
        if self.schema is None:
            self.schema = {"type": "object", "additionalProperties": False, "required": list(self.aspects),
                           "properties": {a: {"type": "integer", "minimum": self.low, "maximum": self.high}
                                          for a in self.aspects}}

    def items(self, responses):
        aspects = ", ".join(self.aspects)
        for iid, task, group in by_instruction(responses):
            for rid, text in zip(group["response_id"], group["response"]):
                yield ({"instruction_id": iid, "item": rid, "response_id": rid},
                       self.messages(task=task, response=text, aspects=aspects, low=self.low, high=self.high))

    def parse(self, text):
        obj = json_answer(text)
        found = {}
        if obj is not None:
            found = {a: obj.get(a) for a in self.aspects}
        elif text:
            for a in self.aspects:  # "Helpfulness: 4" / "correctness - 5"
                m = re.search(rf"\b{re.escape(a)}\b\W{{0,4}}(\d+)\b", str(text), re.I)
                found[a] = int(m.group(1)) if m else None
        ok = all(isinstance(v, int) and not isinstance(v, bool) and self.low <= v <= self.high
                 for v in found.values()) and len(found) == len(self.aspects)
        return (found, True) if ok else (None, False)

    def scores(self, verdicts):
        ok = valid_verdicts(verdicts)
        agg = [sum(v[a] for a in self.aspects) / len(self.aspects) for v in ok["value"]]
        return pd.DataFrame({"instruction_id": ok["instruction_id"].values, "response_id": ok["item"].values,
                             "score": agg})

    def pairs(self, verdicts):
        return pairs_from_scores(self.scores(verdicts))
