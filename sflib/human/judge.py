"""``get_judge("human:alice")``: a human's stored answers served as a judge, for code that takes a judge name.

The exact route for human feedback is :func:`sflib.human.human_feedback` (it keeps ``equal`` answers
and the order each pair was shown in). This judge lets ``rate(responses, "human:alice")`` and
``rank(pairs, "human:alice")`` work too: each request is answered with the human's stored answer to
that item — ``Score: N`` for a rating, ``Output (a)`` / ``Output (b)`` for a pair in the requested
order. A pair the human saw in the other order only is answered with the same *response* preference
(so ``rank``'s decision is the human's choice); a human ``equal`` comes back as the reply ``Equal``,
which ``rank`` keeps as an unreadable (invalid) verdict. An item the human has not answered is a
failed request ("not answered yet"), so a later run asks again once it is answered. ``params``
carry a hash of the human's answers: a changed answer is never served from an old cache entry.
"""
from __future__ import annotations

import hashlib
from typing import Any, Iterable, Iterator

from ..core import data as d
from ..judges.base import Completion, Judge, Request
from .feedback import to_position, to_response_choice
from .lease import judge_name
from .session import stored_answers


class HumanJudge(Judge):
    """The stored answers of annotator ``name`` (store: as :func:`sflib.feedback.ratings.open_store` takes it)."""

    answers_on_retry = False

    def __init__(self, name: str, store: Any = None):
        from ..feedback.ratings import open_store

        self.name = judge_name(name)
        self.model = "human"
        self._store, self._opened = open_store(store)
        self.answers = {}
        for kind in ("ratings", "rankings"):
            df = stored_answers(self._store, self.name, kind)
            for r in df.to_dict("records"):
                self.answers[(r["item_id"], r["order"])] = r
        digest = hashlib.sha256(repr(sorted((k, str(r["value"]), r["status"]) for k, r in self.answers.items()))
                                .encode()).hexdigest()[:16]
        self.params = {"answers": digest}

    def _answer(self, meta: dict) -> Completion:
        iid = d.make_id(meta.get("instruction", ""), meta.get("input", ""))
        if meta.get("kind") == "rating":
            row = self.answers.get((d.make_response_id(iid, meta.get("response", "")), ""))
            if row is None:
                return Completion(error=f"{self.name} has not answered this rating yet (notebook 08)", attempts=0)
            return Completion(text=row["raw"].splitlines()[0])
        item = f"{d.make_response_id(iid, meta.get('response1', ''))}-{d.make_response_id(iid, meta.get('response2', ''))}"
        order = meta.get("order", "12")
        row = self.answers.get((item, order))
        if row is None:
            other = self.answers.get((item, "21" if order == "12" else "12"))
            if other is None:
                return Completion(error=f"{self.name} has not answered this pair yet (notebook 08)", attempts=0)
            if not other["valid"]:
                return Completion(text="Skip")
            position = to_position(to_response_choice(other["value"], other["order"]), order)
            return Completion(text="Equal" if position == "equal" else f"Output ({position})")
        return Completion(text=row["raw"].splitlines()[0])

    def complete(self, requests: Iterable[Request]) -> Iterator[tuple[int, Completion]]:
        for k, request in enumerate(requests):
            yield k, self._answer(request.meta or {})

    def close(self) -> None:
        if self._opened:
            self._store.close()


def human_judge(rest: str, **kwargs: Any) -> HumanJudge:
    """Factory for ``sflib.judges.register_judge("human", human_judge)``: ``human:<name>``."""
    return HumanJudge(rest, **kwargs)
