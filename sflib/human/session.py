"""One annotator working through a queue of tasks: every answer goes to the annotation store at once.

:class:`AnnotationSession` is the widget's engine (and usable without a widget). Each answer is one
row of the store's ``annotations`` table, written with :meth:`AnnotationStore.put` the moment it is
given, under judge ``human:<name>``:

- ``key``: hash of (judge, template version, item id, order) — the same task always has the same
  key, so answering again (after undo or skip) replaces the row;
- ``template_version``: ``human-rating-v1`` / ``human-ranking-v1``; ``model``: ``human``;
- ``prompt``: what the screen showed (the scale / criteria text and the task, in the shown order);
- ``raw``: the answer as text (``Score: 5``, ``Output (a)``, ``Equal``, ``Skip``) then the comment;
- ``value``: the score (1–7) or the *position* picked (``a`` = the first-shown output, ``b``,
  ``equal``); ``status`` ``ok`` — or ``invalid`` with ``error`` "skipped by the annotator";
- ``meta``: item id, order, texts and ids, annotator, comment, item-list hash; ``latency_s``:
  seconds the task was on screen (measured by the browser from when the task was drawn; without a
  screen, from when :meth:`AnnotationSession.current` first showed it).

Reopening a session (a new kernel, or a new object) reads these rows back and resumes at the next
task without a row. Undo deletes the most recent answer of this queue and shows that task again.
"""
from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pandas as pd

from ..feedback.ratings import open_store, task_block
from ..feedback.store import AnnotationStore
from .items import annotator_queue, check_kind, items_hash, make_items, task_texts
from .lease import Lease, judge_name, normalise_name

TEMPLATE_VERSION = {"ratings": "human-rating-v1", "rankings": "human-ranking-v1"}
SCORES = tuple(range(1, 8))
CHOICES = ("a", "b", "equal")
SKIPPED = "skipped by the annotator"


def instructions(kind: str) -> str:
    """The guidance shown above each task: for ratings, the judge's own criteria and 1–7 scale text."""
    from ..core.prompts import load_template

    if check_kind(kind) == "ratings":
        text = load_template("rating_v1").split("\n\nWrite the score first")[0]
        return text.replace("You will see", "You see") + "\n\nPick the score (keys 1-7)."
    text = load_template("ranking_v1").split("\n\nThe order in which")[0]
    return (text.replace("You will see", "You see") + "\n\nThe order in which the outputs are shown says "
            "nothing about their quality. Pick the better one (keys a / b), or equal (key e) when you "
            "cannot tell them apart.")


def screen_text(item: dict, kind: str, order: str) -> str:
    """The task as the screen shows it (also stored as the row's prompt)."""
    t = task_texts(item, kind, order)
    head = task_block(t["instruction"], t["input"])
    if check_kind(kind) == "ratings":
        return f"{head}\n\n### Response:\n{t['response']}"
    return f"{head}\n\n### Output (a):\n{t['output_a']}\n\n### Output (b):\n{t['output_b']}"


def task_key(judge: str, kind: str, item_id: str, order: str) -> str:
    """The store key of one task of one human judge."""
    return AnnotationStore.key(judge, TEMPLATE_VERSION[check_kind(kind)], {}, [], salt=f"{item_id}|{order}")


def answer_row(judge: str, kind: str, item: dict, order: str, value: Any, *, comment: str = "",
               latency_s: float = 0.0, items_hash: str = "", source: str = "widget") -> dict:
    """The store row for one answer (``value`` None = skipped). Validates the value."""
    kind = check_kind(kind)
    if value is not None:
        if kind == "ratings":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in SCORES:
                raise ValueError(f"a rating must be a whole number from 1 to 7, got {value!r}")
            value = int(value)
        else:
            value = str(value).strip().lower()
            if value not in CHOICES:
                raise ValueError(f"a pair choice must be one of a, b, equal, got {value!r}")
    if value is None:
        raw = "Skip"
    elif kind == "ratings":
        raw = f"Score: {value}"
    else:
        raw = "Equal" if value == "equal" else f"Output ({value})"
    comment = (comment or "").strip()
    if comment:
        raw += "\n" + comment
    id_fields = (["instruction_id", "response_id", "response"] if kind == "ratings"
                 else ["instruction_id", "response_id_1", "response_id_2", "response1", "response2"])
    meta = {"kind": kind[:-1], "item_id": str(item["item_id"]), "order": order, "annotator": judge[len("human:"):],
            "instruction": item["instruction"], "input": item.get("input", "") or "", "comment": comment,
            "items_hash": items_hash, "source": source, **{f: item[f] for f in id_fields}}
    messages = [{"role": "system", "content": instructions(kind)},
                {"role": "user", "content": screen_text(item, kind, order)}]
    return dict(key=task_key(judge, kind, str(item["item_id"]), order), judge=judge, model="human",
                template_version=TEMPLATE_VERSION[kind], params={}, messages=messages, meta=meta,
                status="ok" if value is not None else "invalid", raw=raw, value=value,
                valid=value is not None, error=None if value is not None else SKIPPED,
                latency_s=float(latency_s), attempts=1)


def stored_answers(store: AnnotationStore, judge: str, kind: str) -> pd.DataFrame:
    """The rows a human judge has in the store for ``kind`` (oldest first), with ``item_id`` / ``order``."""
    # decode=False and our own decoding: store.to_frame() fails on a NULL value (a skip) next to numbers
    df = store.to_frame(judge=judge, template_version=TEMPLATE_VERSION[check_kind(kind)], decode=False)
    for column in ("params", "prompt", "meta", "value"):
        df[column] = pd.Series([None if v is None or (isinstance(v, float) and v != v) else json.loads(v)
                                for v in df[column]], index=df.index, dtype=object)
    df["item_id"] = [str((m or {}).get("item_id", "")) for m in df["meta"]]
    df["order"] = [str((m or {}).get("order", "")) for m in df["meta"]]
    return df


class AnnotationSession:
    """``annotator``'s queue of ``kind`` tasks over ``items``, resumable, written through to ``store``.

    ``items``: an item list (:func:`~sflib.human.items.rating_items` / ``ranking_items``) or a
    responses / pairs table. ``assignment``: the frame of :func:`~sflib.human.items.assign` — this
    annotator's rows give the queue; without it the annotator gets every item, shuffled with
    ``seed`` (pairs in a random recorded order; ``both_orders`` share asked in both orders).
    ``store``: an :class:`AnnotationStore`, a path, or ``None`` for ``outputs/annotations.sqlite``.
    ``force=True`` takes over an annotator open in another kernel.

    Attributes after opening: ``changes`` (None, or what changed in the item list since last time:
    ``added`` / ``vanished`` item ids and ``kept_answers`` for vanished items), ``orphans`` (stored
    answers whose item is not in this list — kept in the store, never deleted), ``notes``.
    """

    def __init__(self, items: pd.DataFrame, annotator: str, store: Any = None, kind: str = "ratings", *,
                 assignment: pd.DataFrame | None = None, seed: int = 0, both_orders: float = 0.0,
                 force: bool = False):
        self.kind = check_kind(kind)
        self.annotator = normalise_name(annotator)
        self.judge = judge_name(self.annotator)
        self.items = make_items(items, self.kind)
        self._by_id = {str(r["item_id"]): r for r in self.items.to_dict("records")}
        self.items_hash = items_hash(self.items)
        if assignment is not None:
            mine = assignment[assignment["annotator"] == self.annotator].sort_values("position")
            if mine.empty:
                raise ValueError(f"the assignment has no tasks for annotator {self.annotator!r} "
                                 f"(it has: {', '.join(sorted(set(assignment['annotator'])))})")
            unknown = sorted(set(mine["item_id"]) - set(self._by_id))
            if unknown:
                raise ValueError(f"the assignment names {len(unknown)} item(s) not in the item list, e.g. {unknown[0]!r}")
            self.queue = mine[["item_id", "order"]].astype(str).to_records(index=False).tolist()
        else:
            q = annotator_queue(self.items["item_id"], self.annotator, self.kind, seed=seed, both_orders=both_orders)
            self.queue = list(zip(q["item_id"], q["order"]))
        self.queue = [(str(i), str(o)) for i, o in self.queue]
        self.store, self._opened = open_store(store)
        if self.store is None:
            raise ValueError("a human annotator needs a store (every answer is written to it at once)")
        self.notes: list[str] = []
        self.lease = Lease(self.store, self.annotator, self.kind, force=force)
        if self.lease.note:
            self.notes.append(self.lease.note)
        self._load()
        self._check_item_list()
        self.pos = self._next_open(0)
        self._shown_at = None  # the clock starts when the task is shown (current())

    # ------------------------------------------------------------------------ state
    def _load(self) -> None:
        df = stored_answers(self.store, self.judge, self.kind)
        self.answers = {(r["item_id"], r["order"]): r for r in df.to_dict("records")}
        in_queue = set(self.queue)
        mine = np.array([(i, o) in in_queue for i, o in zip(df["item_id"], df["order"])], dtype=bool)
        self.orphans = df[~mine]  # a mask, also for no stored answers (a plain [] would select no columns)

    def _check_item_list(self) -> None:
        tables = self.lease.tables
        before = tables.session(self.annotator, self.kind)
        self.changes = None
        ids = list(self._by_id)
        if before is not None and before["items_hash"] != self.items_hash:
            old, new = set(before["item_ids"]), set(ids)
            vanished = sorted(old - new)
            kept = self.orphans[self.orphans["item_id"].isin(vanished)]
            self.changes = {"added": sorted(new - old), "vanished": vanished, "kept_answers": len(kept)}
            self.notes.append(
                f"the item list changed since {self.annotator} last worked on it: {len(new - old)} item(s) added, "
                f"{len(vanished)} gone; your {len(kept)} answer(s) to items no longer listed are kept in the "
                f"store (see .orphans), answers to items still listed are kept and count")
        elif len(self.orphans):
            self.notes.append(f"{len(self.orphans)} stored answer(s) of {self.annotator} are for tasks not in "
                              "this queue; they are kept in the store (see .orphans)")
        tables.set_session(self.annotator, self.kind, self.items_hash, ids)

    def _next_open(self, start: int) -> int | None:
        n = len(self.queue)
        for k in list(range(start, n)) + list(range(0, min(start, n))):
            if self.queue[k] not in self.answers:
                return k
        return None

    @property
    def done(self) -> bool:
        return self.pos is None

    def current(self) -> dict | None:
        """The task on screen: the item's fields plus ``order``, ``position``, ``text`` (None when done)."""
        if self.pos is None:
            return None
        if self._shown_at is None:
            self._shown_at = time.time()
        item_id, order = self.queue[self.pos]
        item = dict(self._by_id[item_id])
        prev = self.answers.get((item_id, order))
        return dict(item, order=order, position=self.pos, text=screen_text(item, self.kind, order),
                    previous=None if prev is None else prev["value"], **task_texts(item, self.kind, order))

    def progress(self) -> dict:
        """``total`` tasks, ``answered``, ``skipped``, ``remaining``."""
        mine = [self.answers[t] for t in self.queue if t in self.answers]
        answered = sum(1 for r in mine if r["status"] == "ok")
        skipped = len(mine) - answered
        return {"total": len(self.queue), "answered": answered, "skipped": skipped,
                "remaining": len(self.queue) - len(mine)}

    # ------------------------------------------------------------------------ actions
    def _write(self, value: Any, comment: str, latency_s: float | None) -> dict:
        if self.pos is None:
            raise RuntimeError(f"{self.annotator}: every task is done (press Undo or Revisit skipped to change one)")
        item_id, order = self.queue[self.pos]
        if latency_s is None or not float(latency_s) >= 0:  # no clock of the screen's: this session's own
            latency_s = time.time() - (self._shown_at or time.time())
        row = answer_row(self.judge, self.kind, self._by_id[item_id], order, value, comment=comment,
                         latency_s=float(latency_s), items_hash=self.items_hash)
        self.lease.check()
        self.store.put(**row)
        row["created_at"] = time.time()
        row["item_id"], row["order"] = item_id, order
        self.answers[(item_id, order)] = row
        self.pos = self._next_open(self.pos + 1)
        self._shown_at = None  # the clock starts when the task is shown (current())
        return row

    def answer(self, value: Any, comment: str = "", latency_s: float | None = None) -> dict:
        """Record ``value`` (a score 1–7, or ``a`` / ``b`` / ``equal`` = the position picked) for the task on screen.

        ``latency_s``: seconds the task was on screen, as the screen measured it; without it, the seconds
        since this session showed the task (:meth:`current` first called for it)."""
        return self._write(value, comment, latency_s)

    def skip(self, comment: str = "", latency_s: float | None = None) -> dict:
        """Record that the annotator skipped the task (stored as ``invalid``, error 'skipped by the annotator')."""
        return self._write(None, comment, latency_s)

    def undo(self) -> dict | None:
        """Delete the most recent answer of this queue and show that task again; None if there is none."""
        self.lease.check()  # a window whose annotator was taken over says so, also when it has nothing to undo
        mine = [(r.get("created_at", 0.0), t) for t, r in self.answers.items() if t in set(self.queue)]
        if not mine:
            return None
        _, task = max(mine, key=lambda x: x[0])
        row = self.answers.pop(task)
        self.store.delete([row["key"]])
        self.pos = self.queue.index(task)
        self._shown_at = None  # the clock starts when the task is shown (current())
        return row

    def revisit_skipped(self) -> bool:
        """Show the first skipped task again (answering it replaces the skip); False if none was skipped."""
        self.lease.check()
        for k, t in enumerate(self.queue):
            if t in self.answers and self.answers[t]["status"] != "ok":
                self.pos = k
                self._shown_at = None  # the clock starts when the task is shown (current())
                return True
        return False

    def close(self) -> None:
        """Release the lease (another kernel may open this annotator then); answers are already stored."""
        self.lease.close()
        if self._opened:
            self.store.close()

    def __repr__(self) -> str:
        p = self.progress()
        return (f"AnnotationSession({self.judge}, {self.kind}: {p['answered']} answered, {p['skipped']} skipped, "
                f"{p['remaining']} to go)")
