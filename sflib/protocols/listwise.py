"""``listwise-k``: all k responses of an instruction in one call, labelled A, B, C, ...; the judge
ranks them best first. One call per instruction (against k(k-1) for pairwise in both orders). The
parser rejects a ranking that is not a permutation of the labels shown; the ranking implies every
pair (the earlier-ranked response preferred, no ties). A reward model trains on those implied pairs
(Bradley-Terry), which is Plackett-Luce's pairwise marginal, not the full Plackett-Luce likelihood.
"""
from __future__ import annotations

import re

import pandas as pd

from .base import PAIR_COLUMNS, Protocol, by_instruction, json_answer, letters, sorted_pair, valid_verdicts

_SEQ = re.compile(r"\b([A-Z])\b(?:\s*(?:>|,|;|>>|then|\s)\s*\b([A-Z])\b)+")


def parse_ranking(text: str | None, k: int | None = None) -> tuple[list[str] | None, bool]:
    """A ranking of labels, best first: ``{"ranking": ["B", "A", "C"]}`` or a line such as ``B > A > C``.
    Valid only when it is a permutation of the first n labels (A..), n >= 2 (= ``k`` when given)."""
    obj = json_answer(text)
    if obj is not None:
        seq = obj.get("ranking")
        if not isinstance(seq, list) or not all(isinstance(x, str) for x in seq):
            return None, False
        seq = [x.strip().strip("()").upper() for x in seq]
    else:
        seq = None
        for line in str(text or "").splitlines():
            m = _SEQ.search(line)
            if m:
                seq = re.findall(r"\b([A-Z])\b", m.group(0))
                break
        if seq is None:
            return None, False
    n = len(seq)
    if n < 2 or sorted(seq) != letters(n) or (k is not None and n != k):
        return None, False
    return seq, True


class Listwise(Protocol):
    unit = "list"
    reward_model = "Bradley-Terry on the implied pairs (Plackett-Luce's pairwise marginal)"

    def items(self, responses):
        for iid, task, group in by_instruction(responses):
            ids, texts = list(group["response_id"]), list(group["response"])
            labels = letters(len(ids))
            block = "\n\n".join(f"### Response {lab}:\n{t}" for lab, t in zip(labels, texts))
            yield ({"instruction_id": iid, "item": iid, "response_ids": ids, "k": len(ids)},
                   self.messages(task=task, responses=block, labels=", ".join(labels), k=len(ids)))

    def request_schema(self, k: int) -> dict:
        """The answer's schema for k responses: a permutation of the k labels."""
        labels = letters(k)
        return {"type": "object", "additionalProperties": False, "required": ["ranking"],
                "properties": {"ranking": {"type": "array", "items": {"type": "string", "enum": labels},
                                           "minItems": k, "maxItems": k, "uniqueItems": True}}}

    def requests(self, responses):
        items, requests = super().requests(responses)
        for item, req in zip(items, requests):
            req.meta["schema"] = self.request_schema(item["k"])
        return items, requests

    def parse(self, text):
        return parse_ranking(text)

    def acquire(self, responses, judge, **kwargs):
        out = super().acquire(responses, judge, **kwargs)
        # a permutation of the wrong length (labels the judge was not shown missing) is invalid here
        wrong = [bool(ok) and (not isinstance(v, list) or len(v) != k)
                 for ok, v, k in zip(out["valid"], out["value"], out["k"])]
        if any(wrong):
            w = pd.Series(wrong, index=out.index)
            out.loc[w, "valid"] = False
            out.loc[w, "status"] = "invalid"
            out.loc[w, "error"] = "ranking is not a permutation of the responses shown"
        return out

    def pairs(self, verdicts):
        rows = []
        for iid, ids, seq in zip(*(valid_verdicts(verdicts)[c] for c in ("instruction_id", "response_ids", "value"))):
            position = {lab: i for i, lab in enumerate(seq)}
            labels = letters(len(ids))
            for i in range(len(ids)):
                for j in range(i + 1, len(ids)):
                    if ids[i] == ids[j]:
                        continue
                    rows.append(sorted_pair(iid, ids[i], ids[j],
                                            1.0 if position[labels[i]] < position[labels[j]] else 0.0))
        return pd.DataFrame(rows, columns=PAIR_COLUMNS)

    def scores(self, verdicts):
        """Borda-style score per response: k − rank (best = k − 1, worst = 0)."""
        rows = []
        for iid, ids, seq in zip(*(valid_verdicts(verdicts)[c] for c in ("instruction_id", "response_ids", "value"))):
            labels = letters(len(ids))
            rows += [{"instruction_id": iid, "response_id": rid, "score": len(ids) - 1 - seq.index(lab)}
                     for rid, lab in zip(ids, labels)]
        return pd.DataFrame(rows, columns=["instruction_id", "response_id", "score"])

    def position_bias(self, verdicts):
        ok = valid_verdicts(verdicts)
        n = len(ok)
        first = [seq[0] == "A" for seq in ok["value"]]
        chance = float((1 / ok["k"]).mean()) if n else float("nan")
        return {"first_shown_rate": float(sum(first) / n) if n else float("nan"), "chance": chance, "n": n}
