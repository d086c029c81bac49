"""What a human annotates: rating items (one response each) and ranking items (one pair each).

An *item* is one thing to judge, identified by ``item_id``:

- rating item  = a response: ``item_id = response_id`` (:func:`rating_items`);
- ranking item = a pair ``(response1, response2)``: ``item_id = "<response_id_1>-<response_id_2>"``
  (:func:`ranking_items`). ``response1`` / ``response2`` keep the meaning they have everywhere
  (decision ``a`` = response1 is better); which one is *shown* first is the task's ``order``.

A *task* is one screen: an item shown in one order (``order`` ``"12"`` shows response1 as
Output (a), ``"21"`` shows response2 first; ratings have order ``""``). :func:`annotator_queue`
gives an annotator's tasks in a randomised order that depends only on the annotator's name and the
seed, and records the pair order each human sees. :func:`items_hash` fingerprints an item list so
an annotator can be told when it changed.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from ..core import data as d
from ..feedback.ratings import _with_ids

KINDS = ("ratings", "rankings")
RATING_ITEM_COLUMNS = ["item_id", "instruction_id", "response_id", "instruction", "input", "response"]
RANKING_ITEM_COLUMNS = ["item_id", "instruction_id", "response_id_1", "response_id_2", "instruction", "input",
                        "response1", "response2"]
QUEUE_COLUMNS = ["annotator", "item_id", "order", "position"]


def check_kind(kind: str) -> str:
    """``"ratings"`` or ``"rankings"`` (singular forms accepted); anything else is a clear error."""
    k = {"rating": "ratings", "ranking": "rankings"}.get(str(kind).strip(), str(kind).strip())
    if k not in KINDS:
        raise ValueError(f"kind must be 'ratings' or 'rankings', got {kind!r}")
    return k


def rating_items(responses: pd.DataFrame) -> pd.DataFrame:
    """One rating item per distinct response (``instruction, input, response``; ``output`` accepted)."""
    df = _with_ids(responses, ["instruction", "input", "response"], ["instruction_id", "response_id"])
    df = df.drop_duplicates("response_id").copy()
    df["item_id"] = df["response_id"]
    extra = [c for c in ("source", "dataset") if c in df.columns]
    return df[RATING_ITEM_COLUMNS + extra].reset_index(drop=True)


def ranking_items(pairs: pd.DataFrame) -> pd.DataFrame:
    """One ranking item per distinct pair (``instruction, input, response1, response2``).

    A table of responses (``response`` column) is turned into all pairs per instruction first
    (:func:`sflib.feedback.rankings.make_pairs`).
    """
    if "response1" not in pairs.columns and "response" in pairs.columns:
        from ..feedback.rankings import make_pairs

        pairs = make_pairs(pairs)
    df = _with_ids(pairs, ["instruction", "input", "response1", "response2"],
                   ["instruction_id", "response_id_1", "response_id_2"])
    df = df[df["response_id_1"] != df["response_id_2"]].copy()
    df["item_id"] = df["response_id_1"] + "-" + df["response_id_2"]
    df = df.drop_duplicates("item_id")
    extra = [c for c in ("source", "dataset") if c in df.columns]
    return df[RANKING_ITEM_COLUMNS + extra].reset_index(drop=True)


def make_items(table: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Items of ``kind`` from a table that already is an item list, a responses table or a pairs table."""
    kind = check_kind(kind)
    if "item_id" in table.columns:
        need = RATING_ITEM_COLUMNS if kind == "ratings" else RANKING_ITEM_COLUMNS
        missing = [c for c in need if c not in table.columns]
        if missing:
            raise ValueError(f"{kind} items need columns {', '.join(need)}; missing {', '.join(missing)}")
        if table["item_id"].duplicated().any():
            dup = table.loc[table["item_id"].duplicated(), "item_id"].iloc[0]
            raise ValueError(f"item list has item_id {dup!r} more than once")
        return table.reset_index(drop=True)
    return rating_items(table) if kind == "ratings" else ranking_items(table)


def items_hash(items: pd.DataFrame) -> str:
    """A short fingerprint of an item list (its item ids, in any order)."""
    ids = sorted(map(str, items["item_id"]))
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()[:16]


def _rng(seed: int, *names: str) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join([str(seed), *names]).encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def annotator_queue(item_ids, annotator: str, kind: str, *, seed: int = 0,
                    both_orders: "set | float" = 0.0) -> pd.DataFrame:
    """An annotator's tasks: ``item_ids`` shuffled, each pair with the order this human sees it in.

    Deterministic given ``(annotator, kind, seed, item_ids)``. For rankings, each pair gets a
    random order (``"12"`` or ``"21"``); ``both_orders`` (a share in [0, 1] of the pairs, or a set
    of item ids) adds the *other* order for those pairs too, shown in the second half of the queue
    so the two screens are far apart — that measures a human's position bias like the judge's.
    Columns: annotator, item_id, order, position (0, 1, ...).
    """
    kind = check_kind(kind)
    ids = list(dict.fromkeys(map(str, item_ids)))
    rng = _rng(seed, annotator, kind)
    ids = [ids[i] for i in rng.permutation(len(ids))]
    if kind == "ratings":
        tasks = [(i, "") for i in ids]
    else:
        orders = rng.choice(["12", "21"], size=len(ids)) if ids else []
        tasks = [(i, str(o)) for i, o in zip(ids, orders)]
        if isinstance(both_orders, (set, frozenset, list, tuple)):
            again = [t for t in tasks if t[0] in set(map(str, both_orders))]
        else:
            share = float(both_orders)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"both_orders must be a share in [0, 1] or a set of item ids, got {both_orders!r}")
            again = [tasks[i] for i in sorted(rng.permutation(len(tasks))[:int(round(share * len(tasks)))])]
        repeats = [(i, "21" if o == "12" else "12") for i, o in again]
        if repeats:  # each repeat goes somewhere after its first showing, in the second half
            half = len(tasks) // 2
            for task in [repeats[i] for i in rng.permutation(len(repeats))]:
                first = next(k for k, t in enumerate(tasks) if t[0] == task[0])
                lo = max(half, first + 1)
                tasks.insert(int(rng.integers(lo, len(tasks) + 1)), task)
    return pd.DataFrame([(annotator, i, o, k) for k, (i, o) in enumerate(tasks)], columns=QUEUE_COLUMNS)


def assign(items: pd.DataFrame, annotators: list[str], *, kind: str, overlap: float = 0.2,
           per_item: int = 2, both_orders: float = 0.0, seed: int = 0,
           by: str | None = "instruction_id") -> pd.DataFrame:
    """Share ``items`` among several annotators with an ``overlap`` share seen by ``per_item`` of them.

    - the unit shared out is a group of items (``by``, default ``instruction_id``: all responses and
      all pairs of one instruction go to the same annotators, so each annotator's ratings cover the
      responses of their pairs and their ratings-vs-rankings consistency can be computed), or one
      item (``by=None``). The group assignment depends only on the group ids, the annotators and the
      seed, so ratings and rankings items of the same instructions get the *same* annotators;
    - ``overlap`` (0–1) of the groups (chosen at random with ``seed``) go to ``per_item`` annotators
      each (at least 2, at most all) so agreement can be measured; the others to one annotator each,
      spread evenly (the least loaded gets the next);
    - for rankings, ``both_orders`` (0–1) of each annotator's *overlapping* pairs are asked in both
      orders (position bias of humans);
    - each annotator's tasks are shuffled per annotator (:func:`annotator_queue`).

    Returns the queue frame (annotator, item_id, order, position) plus ``overlap`` (bool: the item
    is seen by more than one annotator). The same inputs give the same assignment.
    """
    from .lease import normalise_name

    kind = check_kind(kind)
    names = [normalise_name(a) for a in annotators]
    if not names:
        raise ValueError("assign needs at least one annotator")
    if len(set(names)) != len(names):
        raise ValueError(f"annotator names must be distinct, got {annotators!r}")
    if not 0.0 <= float(overlap) <= 1.0:
        raise ValueError(f"overlap must be a share between 0 and 1, got {overlap!r}")
    if by is not None and by not in items.columns:
        raise ValueError(f"assign(by={by!r}): the items have no such column")
    k = min(max(int(per_item), 2), len(names)) if len(names) > 1 else 1
    ids = list(dict.fromkeys(map(str, items["item_id"])))
    group_of = dict(zip(map(str, items["item_id"]), map(str, items[by] if by else items["item_id"])))
    groups = sorted(set(group_of.values()))
    rng = _rng(seed, "assign", ",".join(names))
    order = rng.permutation(len(groups))
    n_overlap = int(round(float(overlap) * len(groups))) if len(names) > 1 else 0
    shared = {groups[i] for i in order[:n_overlap]}
    load = {a: 0 for a in names}
    owners: dict[str, set[str]] = {a: set() for a in names}
    for pos in order:
        group = groups[pos]
        chosen = sorted(names, key=lambda a: (load[a], rng.random()))[:k if group in shared else 1]
        for a in chosen:
            owners[a].add(group)
            load[a] += 1
    frames = []
    for a in names:
        mine = [i for i in ids if group_of[i] in owners[a]]  # item-list order; the queue shuffles
        both = sorted(i for i in mine if group_of[i] in shared)
        share_ids = set()
        if kind == "rankings" and both_orders and both:
            pick = _rng(seed, "both", a).permutation(both)[:int(round(float(both_orders) * len(both)))]
            share_ids = set(map(str, pick))
        q = annotator_queue(mine, a, kind, seed=seed, both_orders=share_ids)
        q["overlap"] = [group_of[i] in shared for i in q["item_id"]]
        frames.append(q)
    return pd.concat(frames, ignore_index=True)


def task_texts(item: dict, kind: str, order: str) -> dict:
    """What the screen shows for one task: ``task`` (instruction + input) and the response(s) in shown order."""
    task = {"instruction": item["instruction"], "input": d.clean_input(item.get("input", ""))}
    if check_kind(kind) == "ratings":
        return dict(task, response=item["response"])
    first, second = ((item["response1"], item["response2"]) if order == "12"
                     else (item["response2"], item["response1"]))
    return dict(task, output_a=first, output_b=second)
