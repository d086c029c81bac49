"""A feedback protocol: what a judge is asked, the answer's JSON schema, how the answer is read, and
what it implies (per-response scores and/or pairwise preferences); how many calls it costs.

A protocol is a YAML file (``sflib/configs/protocols/<name>.yaml``, or one beside a study) plus a
small class (:data:`sflib.protocols.CLASSES`). The file holds:

``name``, ``class`` (a built-in class key: ``rating``, ``pairwise-3way``, ``pairwise-5way``,
``listwise``, ``rubric``; or ``module:Class`` for your own), ``description``, ``template`` (a name in
``sflib/templates/`` with ``<name>.txt`` the user message and ``<name>_system.txt`` the system
message, or a path relative to the protocol file without ``.txt``), ``schema`` (the answer's JSON
schema, asked for when the judge supports structured verdicts), ``calls`` (judge calls per
instruction as an expression in ``k``, e.g. ``k``, ``k*(k-1)``, ``1``), ``reply_tokens`` (tokens of
a typical reply, for the plan) and class options (``aspects``, ``labels``, ``both_orders``).

Every protocol turns its answers into an **implied pairs** table, one row per unordered pair of
responses of an instruction (:data:`PAIR_COLUMNS`): ``response_id_1 < response_id_2``,
``decision`` ``a`` (response 1 preferred) / ``b`` / ``equal``. Two protocols are compared on the
pairs both imply (:mod:`sflib.protocols.compare`).
"""
from __future__ import annotations

import ast
import json
import operator
import re
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core import data as d
from ..core.paths import templates_dir
from ..feedback.annotate import annotate
from ..feedback.ratings import open_store, task_block
from ..judges.base import Judge, Request

#: columns of a protocol's implied pairs
PAIR_COLUMNS = ["instruction_id", "response_id_1", "response_id_2", "decision", "strength"]
#: columns of a protocol's verdicts table (one row per judge call), before protocol-specific ones
VERDICT_COLUMNS = ["protocol", "instruction_id", "item", "value", "valid", "status", "raw", "error",
                   "prompt_tokens", "completion_tokens", "cached", "verdict_format"]

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
        ast.Div: operator.truediv}


class ProtocolError(ValueError):
    """A protocol file that cannot be used; the message names the file and the key."""


def calls_for(expression: str, k: int) -> int:
    """The value of a ``calls`` expression (numbers, ``k``, + - * / //, parentheses) for ``k``."""
    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name) and node.id == "k":
            return k
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(f"calls: only numbers, k, + - * / // and parentheses are allowed, got {expression!r}")

    return int(round(ev(ast.parse(str(expression), mode="eval"))))


def json_answer(text: str | None) -> dict | None:
    """The JSON object in a reply (the whole reply, or the first ``{...}`` in it), else None."""
    if not text:
        return None
    text = str(text).strip()
    for candidate in (text, *(m.group(0) for m in re.finditer(r"\{.*\}", text, re.S))):
        try:
            obj = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def letters(k: int) -> list[str]:
    """``A, B, C, ...`` labels of k listed responses."""
    return [chr(ord("A") + i) for i in range(k)]


def sorted_pair(instruction_id, id_x, id_y, x_wins: float) -> dict:
    """One implied-pairs row with the ids in sorted order; ``x_wins`` 1 (x preferred), 0 (y), 0.5 (equal)."""
    if str(id_x) <= str(id_y):
        first, second, s = id_x, id_y, x_wins
    else:
        first, second, s = id_y, id_x, 1.0 - x_wins
    decision = "a" if s > 0.5 else "b" if s < 0.5 else "equal"
    return dict(instruction_id=instruction_id, response_id_1=first, response_id_2=second, decision=decision,
                strength=float(s))


def pairs_from_scores(scores: pd.DataFrame, score: str = "score") -> pd.DataFrame:
    """Implied pairs from per-response scores (higher wins, equal scores: ``equal``); ``strength`` is
    1 / 0 / 0.5. Each response once (its first valid score, the rule of :mod:`sflib.consistency`); a response
    listed twice for one instruction (the same text sampled twice) also implies the pair with itself,
    ``equal``, as stage 04 counts it."""
    rows = []
    scored = scores.dropna(subset=[score])
    twice = scored[scored.duplicated(["instruction_id", "response_id"])].drop_duplicates(["instruction_id", "response_id"])
    rows += [dict(instruction_id=i, response_id_1=r, response_id_2=r, decision="equal", strength=0.5)
             for i, r in zip(twice["instruction_id"], twice["response_id"])]
    df = scored.drop_duplicates("response_id")
    for iid, group in df.groupby("instruction_id", sort=False):
        vals = list(zip(group["response_id"], group[score]))
        for (rx, sx), (ry, sy) in combinations(vals, 2):
            if rx == ry:
                continue
            rows.append(sorted_pair(iid, rx, ry, 1.0 if sx > sy else 0.0 if sx < sy else 0.5))
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


class Protocol:
    """Base class; a subclass sets :attr:`unit` and implements :meth:`items`, :meth:`parse`,
    :meth:`pairs` (and :meth:`scores` / :meth:`position_bias` where they exist)."""

    #: what one call judges: ``response`` (pointwise), ``pair`` or ``list``
    unit = "response"
    #: the reward model this protocol's answers train (see docs/protocols.md)
    reward_model = "regression on scores"

    def __init__(self, spec: dict, source: str | Path | None = None):
        self.spec = dict(spec)
        self.source = str(source) if source else "<spec>"
        self.name = str(spec.get("name") or "protocol")
        self.description = str(spec.get("description") or "")
        self.schema = spec.get("schema")
        self.calls_expr = str(spec.get("calls", "k"))
        self.reply_tokens = int(spec.get("reply_tokens", 64))
        self.template = spec.get("template")
        self.version = str(spec.get("version", "v1"))
        calls_for(self.calls_expr, 3)  # refuse a bad expression now, naming the file
        if self.schema is not None and not isinstance(self.schema, dict):
            raise ProtocolError(f"{self.source}: schema: expected a JSON schema mapping")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # ------------------------------------------------------------------ cost
    def calls_per_instruction(self, k: int) -> int:
        """Judge calls this protocol makes for one instruction with ``k`` responses."""
        return calls_for(self.calls_expr, k)

    # ------------------------------------------------------------------ prompts
    def _template_text(self, suffix: str) -> str:
        name = str(self.template)
        here = Path(self.source).parent if self.source != "<spec>" else None
        for folder in ([here] if here else []) + [templates_dir()]:
            path = folder / f"{name}{suffix}.txt"
            if path.exists():
                return path.read_text(encoding="utf-8")
        raise ProtocolError(f"{self.source}: template: no {name}{suffix}.txt beside the protocol file or in "
                            f"{templates_dir()}")

    def messages(self, **fields: str) -> list[dict]:
        """System + user messages of the protocol's template with ``fields`` filled in."""
        return [{"role": "system", "content": self._template_text("_system").strip()},
                {"role": "user", "content": self._template_text("").format(**fields).strip()}]

    @property
    def template_version(self) -> str:
        """Part of the cache key: the protocol's name and version."""
        return f"{self.name}-{self.version}"

    # ------------------------------------------------------------------ to implement
    def items(self, responses: pd.DataFrame) -> list[tuple[dict, list[dict]]]:
        """``(item, messages)`` per judge call; ``item`` holds ``instruction_id``, ``item`` (a label) and
        what :meth:`pairs` needs."""
        raise NotImplementedError

    def parse(self, text: str | None) -> tuple[Any, bool]:
        """``(value, valid)`` of one reply (JSON first, then the protocol's text reading)."""
        raise NotImplementedError

    def pairs(self, verdicts: pd.DataFrame) -> pd.DataFrame:
        """The implied pairs (:data:`PAIR_COLUMNS`) of this protocol's valid verdicts."""
        raise NotImplementedError

    def scores(self, verdicts: pd.DataFrame) -> pd.DataFrame | None:
        """Per-response scores (``instruction_id, response_id, score``) where the protocol gives them."""
        return None

    def position_bias(self, verdicts: pd.DataFrame) -> dict | None:
        """``{first_shown_rate, chance, n}``: how often the first-shown response wins; None where
        the protocol shows one response per call."""
        return None

    # ------------------------------------------------------------------ asking
    def requests(self, responses: pd.DataFrame) -> tuple[list[dict], list[Request]]:
        responses = _with_ids(responses)
        items, requests = [], []
        for item, messages in self.items(responses):
            meta = {"kind": self.name, "protocol": self.name, "schema": self.schema,
                    "instruction_id": item["instruction_id"], "item": item["item"]}
            items.append(item)
            requests.append(Request(messages=messages, meta=meta))
        return items, requests

    def acquire(self, responses: pd.DataFrame, judge: Judge, *, store: Any = None, retry_invalid: bool = False,
                progress: bool = True) -> pd.DataFrame:
        """Ask ``judge`` every call of this protocol for ``responses`` (cached, resumable, nothing lost:
        :func:`sflib.feedback.annotate.annotate`) and return the verdicts table (:data:`VERDICT_COLUMNS` +
        the items' own columns)."""
        items, requests = self.requests(responses)
        st, opened = open_store(store)
        try:
            res = annotate(judge, requests, store=st, template_version=self.template_version, parse=self.parse,
                           retry_invalid=retry_invalid, desc=f"{self.name} ({judge.name})", progress=progress,
                           soft=False)
            stored = st.get_many(list(res["key"])) if st is not None and len(res) else {}
        finally:
            if opened:
                st.close()
        out = pd.DataFrame(items)
        out.insert(0, "protocol", self.name)
        for col in ("value", "valid", "status", "raw", "error", "prompt_tokens", "completion_tokens", "cached"):
            out[col] = res[col].values if len(res) else []
        # which answer format was asked for (json_schema / json_object / guided_json / text, or text after a
        # refusal): recorded in the store's meta by sflib.protocols.structured when the call was made
        out["verdict_format"] = [((stored.get(k) or {}).get("meta") or {}).get("verdict_format")
                                 or r.meta.get("verdict_format", "text") for k, r in zip(res["key"], requests)]
        out.attrs["stats"] = dict(res.attrs.get("stats", {}))
        return out


def _with_ids(responses: pd.DataFrame) -> pd.DataFrame:
    df = responses.copy()
    if "output" in df.columns and "response" not in df.columns:
        df = df.rename(columns={"output": "response"})
    if "input" not in df.columns:
        df["input"] = ""
    df["input"] = [d.clean_input(x) for x in df["input"]]
    if "instruction_id" not in df.columns or "response_id" not in df.columns:
        df = d.add_ids(df)
    return df.drop_duplicates(["instruction_id", "response_id"]).reset_index(drop=True)


def by_instruction(responses: pd.DataFrame):
    """``(instruction_id, task text, group)`` per instruction, responses in file order."""
    for iid, group in responses.groupby("instruction_id", sort=False):
        first = group.iloc[0]
        yield iid, task_block(first["instruction"], first["input"]), group


def valid_verdicts(verdicts: pd.DataFrame) -> pd.DataFrame:
    ok = verdicts["valid"].fillna(False).astype(bool) if "valid" in verdicts else np.ones(len(verdicts), bool)
    return verdicts[ok]
