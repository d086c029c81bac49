"""Pairwise protocols: two responses per call, every pair asked in both orders.

``pairwise-3way`` is the paper's a/b choice through :func:`sflib.feedback.rankings.rank`, unchanged
(``equal`` when the two orders disagree). ``pairwise-5way`` asks a preference with strength, as
HelpSteer2-Preference collects it: -2 "Output (a) is much better", -1 "(a) is better", 0 "about the
same", 1 "(b) is better", 2 "(b) is much better"; the two orders are averaged (in response-1 terms)
and the sign is the decision, ``strength`` = (mean + 2) / 4 the share of the preference for response 1.
"""
from __future__ import annotations

import re
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from ..feedback.parsing import parse_choice
from ..feedback.rankings import make_pairs, rank
from ..judges.base import Judge
from .base import PAIR_COLUMNS, Protocol, by_instruction, json_answer, sorted_pair, valid_verdicts
from .pointwise import _format_of

_RECORD = ["valid", "status", "error", "prompt_tokens", "completion_tokens", "cached"]


class Pairwise3Way(Protocol):
    """The paper's a/b choice, both orders (templates ``ranking_v1``; :func:`~sflib.feedback.parsing.parse_choice`,
    which reads the structured ``{"choice": "Output (a)"}`` as its first line names one output)."""

    unit = "pair"
    reward_model = "Bradley-Terry on the decisions, ties excluded (05's rankings RM)"

    def parse(self, text):
        obj = json_answer(text)
        if obj is not None and isinstance(obj.get("choice"), str):
            return parse_choice(obj["choice"])
        return parse_choice(text)

    def items(self, responses):
        """Stage 03's requests, both orders (for the plan; :meth:`acquire` goes through :func:`rank`)."""
        from ..feedback.ratings import render_messages

        both = bool(self.spec.get("both_orders", True))
        for iid, task, group in by_instruction(responses):
            texts = dict(zip(group["response_id"], group["response"]))
            for r1, r2 in combinations(list(texts), 2):
                for order in (("12", "21") if both else ("12",)):
                    a, b = (r1, r2) if order == "12" else (r2, r1)
                    yield ({"instruction_id": iid, "item": f"{r1}|{r2}|{order}"},
                           render_messages(str(self.template), task=task, output_a=texts[a], output_b=texts[b]))

    def acquire(self, responses: pd.DataFrame, judge: Judge, *, store: Any = None, retry_invalid: bool = False,
                progress: bool = True) -> pd.DataFrame:
        """:func:`sflib.feedback.rankings.rank` with the protocol's template: stage 03's requests (same cache
        keys), so answers 03 stored are reused."""
        table = rank(make_pairs(responses), judge, store=store, template=str(self.template),
                     both_orders=bool(self.spec.get("both_orders", True)), retry_invalid=retry_invalid,
                     progress=progress)
        out = self.from_table(table)
        out.attrs["stats"] = dict(table.attrs.get("stats", {}))
        return out

    def from_table(self, rankings: pd.DataFrame) -> pd.DataFrame:
        """The verdicts table of a rankings table (03's output, or :func:`rank`'s)."""
        out = pd.DataFrame({"protocol": self.name, "instruction_id": rankings["instruction_id"].values,
                            "item": (rankings["response_id_1"].astype(str) + "|"
                                     + rankings["response_id_2"].astype(str)).values,
                            "response_id_1": rankings["response_id_1"].values,
                            "response_id_2": rankings["response_id_2"].values,
                            "value": rankings["decision"].values})
        for col in ("verdict_12", "verdict_21", "raw_12", "raw_21"):
            out[col] = rankings[col].values if col in rankings else None
        for col in _RECORD:
            out[col] = rankings[col].values if col in rankings else None
        if "valid" not in rankings:
            out["valid"] = out["value"].isin(["a", "b", "equal"])
        out["raw"] = out["raw_12"]
        out["verdict_format"] = [_format_of(r) for r in out["raw"]]
        return out

    def pairs(self, verdicts):
        ok = valid_verdicts(verdicts)
        ok = ok[ok["value"].isin(["a", "b", "equal"])]
        rows = [sorted_pair(i, r1, r2, {"a": 1.0, "b": 0.0, "equal": 0.5}[v])
                for i, r1, r2, v in zip(ok["instruction_id"], ok["response_id_1"], ok["response_id_2"], ok["value"])]
        return pd.DataFrame(rows, columns=PAIR_COLUMNS)

    def position_bias(self, verdicts):
        picks = pd.concat([verdicts.get("verdict_12", pd.Series(dtype=object)),
                           verdicts.get("verdict_21", pd.Series(dtype=object))])
        picks = picks[picks.isin(["a", "b"])]
        n = len(picks)
        return {"first_shown_rate": float((picks == "a").mean()) if n else float("nan"), "chance": 0.5, "n": n}


#: the 5-way labels, from "Output (a) is much better" (-2) to "Output (b) is much better" (2)
FIVE_WAY = {-2: "Output (a) is much better", -1: "Output (a) is better", 0: "About the same",
            1: "Output (b) is better", 2: "Output (b) is much better"}
_TEXT_5 = [(re.compile(r"\(?\b(a)\)?\s+is\s+(much|far|significantly)\s+better", re.I), -2),
           (re.compile(r"\(?\b(b)\)?\s+is\s+(much|far|significantly)\s+better", re.I), 2),
           (re.compile(r"\(?\b(a)\)?\s+is\s+(slightly\s+)?better", re.I), -1),
           (re.compile(r"\(?\b(b)\)?\s+is\s+(slightly\s+)?better", re.I), 1),
           (re.compile(r"\b(about|roughly)\s+the\s+same\b|\bequal(ly good)?\b|\btie\b", re.I), 0)]


def parse_preference(text: str | None) -> tuple[int | None, bool]:
    """A 5-way preference -2..2: ``{"preference": -1}`` (or the label text), else the label in the reply's
    first line that has one. Out of range, a non-integer, or no label: invalid."""
    obj = json_answer(text)
    if obj is not None:
        v = obj.get("preference")
        if isinstance(v, str):
            v = {label.lower(): k for k, label in FIVE_WAY.items()}.get(v.strip().lower(), v)
            try:
                v = int(v)
            except (TypeError, ValueError):
                return None, False
        ok = isinstance(v, int) and not isinstance(v, bool) and -2 <= v <= 2
        return (v, True) if ok else (None, False)
    for line in str(text or "").splitlines():
        m = re.fullmatch(r"\s*(?:preference\s*[:=]\s*)?([-+]?\d+)\s*\.?\s*", line, re.I)
        if m:
            v = int(m.group(1))
            return (v, True) if -2 <= v <= 2 else (None, False)
        for regex, value in _TEXT_5:
            if regex.search(line):
                return value, True
    return None, False


class Pairwise5Way(Protocol):
    """Preference with strength, both orders (see the module notes)."""

    unit = "pair"
    reward_model = "Bradley-Terry on the decisions (ties excluded); strength as the target probability on request"

    def items(self, responses):
        both = bool(self.spec.get("both_orders", True))
        for iid, task, group in by_instruction(responses):
            texts = dict(zip(group["response_id"], group["response"]))
            for r1, r2 in combinations(list(texts), 2):
                for order in (("12", "21") if both else ("12",)):
                    a, b = (r1, r2) if order == "12" else (r2, r1)
                    yield ({"instruction_id": iid, "item": f"{r1}|{r2}|{order}", "response_id_1": r1,
                            "response_id_2": r2, "order": order},
                           self.messages(task=task, output_a=texts[a], output_b=texts[b]))

    def parse(self, text):
        return parse_preference(text)

    def pairs(self, verdicts):
        ok = valid_verdicts(verdicts)
        both = bool(self.spec.get("both_orders", True))
        rows = []
        for (iid, r1, r2), g in ok.groupby(["instruction_id", "response_id_1", "response_id_2"], sort=False):
            # in response-1 terms: positive = response 1 preferred
            s = [-int(v) if o == "12" else int(v) for v, o in zip(g["value"], g["order"])]
            if both and len(set(g["order"])) < 2:
                continue  # one order invalid: no decision (as pairwise-3way)
            mean = float(np.mean(s))
            rows.append(sorted_pair(iid, r1, r2, (mean + 2) / 4))
        return pd.DataFrame(rows, columns=PAIR_COLUMNS)

    def position_bias(self, verdicts):
        ok = valid_verdicts(verdicts)
        v = pd.to_numeric(ok["value"], errors="coerce")
        v = v[v != 0]
        n = int(v.notna().sum())
        return {"first_shown_rate": float((v < 0).mean()) if n else float("nan"), "chance": 0.5, "n": n}
