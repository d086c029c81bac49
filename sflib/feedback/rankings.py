"""Rankings: a judge picks the better of two responses, every pair asked in both orders.

:func:`rank` renders the few-shot ranking prompt (``sflib/templates/ranking_v1*.txt``: the task,
"Output (a)" and "Output (b)", judged on accuracy, coherence and harmlessness), asks the judge
through :func:`sflib.feedback.annotate.annotate` (cached, resumable, nothing lost) and parses replies with
:func:`sflib.feedback.parsing.parse_choice`.

Both orders: order ``12`` shows response1 as Output (a); order ``21`` shows response2 as Output (a).
``verdict_12`` / ``verdict_21`` are the *positions* the judge picked (``a`` = the first-shown
output) in each order. The decision is

- ``a``     if response1 wins in both orders (``verdict_12 == 'a'`` and ``verdict_21 == 'b'``),
- ``b``     if response2 wins in both orders (``verdict_12 == 'b'`` and ``verdict_21 == 'a'``),
- ``equal`` if the orders disagree (the same position picked twice: position bias),

and NaN with ``valid=False`` when either order is invalid or failed (the row is kept, never
dropped). :func:`position_bias` summarises how often each order picks the first-shown output.

The ``rank`` command is in :mod:`sflib.feedback.cli`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..core import data as d
from ..judges import Judge, Request
from .parsing import parse_choice
from .ratings import (_front, _with_ids, annotate_with_store, default_template, render_messages, resolve_judge,
                      soft_values, task_block, template_version)
from .logprobs import combine_orders

#: columns :func:`rank` adds after :data:`sflib.core.data.RANKING_COLUMNS`
RANKING_RECORD_COLUMNS = ["verdict_12", "verdict_21", "raw_12", "raw_21", "valid", "status", "error",
                          "judge", "template_version", "prompt_tokens", "completion_tokens", "cached", "p_a"]


def ranking_request(instruction: str, input: object, response1: str, response2: str, order: str = "12",
                    template: str = "ranking_v1") -> Request:
    """The request for one pair in one order (``"12"``: response1 is Output (a); ``"21"``: swapped)."""
    if order not in ("12", "21"):
        raise ValueError(f"order must be '12' or '21', got {order!r}")
    first, second = (response1, response2) if order == "12" else (response2, response1)
    messages = render_messages(template, task=task_block(instruction, input), output_a=first, output_b=second)
    return Request(messages=messages, meta={"kind": "ranking", "instruction": instruction,
                                            "input": d.clean_input(input), "response1": response1,
                                            "response2": response2, "order": order})


def combine_verdicts(verdict_12: object, verdict_21: object, both_orders: bool = True) -> object:
    """The decision (``a`` / ``b`` / ``equal``) from the positions picked in the two orders; NaN if unknown."""
    if verdict_12 not in ("a", "b"):
        return np.nan
    if not both_orders:
        return verdict_12
    if verdict_21 not in ("a", "b"):
        return np.nan
    if verdict_12 == "a" and verdict_21 == "b":
        return "a"
    if verdict_12 == "b" and verdict_21 == "a":
        return "b"
    return "equal"


def _worst(*statuses: str) -> str:
    for s in ("failed", "invalid"):
        if s in statuses:
            return s
    return "ok"


def rank(pairs: pd.DataFrame, judge: str | Judge, *, store: Any = None, template: str | None = None,
         both_orders: bool = True, retry_invalid: bool = False, progress: bool = True,
         mode: str = "online", batch: dict | None = None) -> pd.DataFrame:
    """Ask ``judge`` which response of each pair is better (in both orders) and return one row per pair.

    ``pairs`` has ``instruction, input, response1, response2`` (ids are added when absent; see
    :func:`make_pairs`). ``store``, ``retry_invalid`` and ``template`` (default ``ranking_<v>``, the
    judge config's version) as in :func:`sflib.feedback.ratings.rate`.
    ``both_orders=False`` asks only order 12 and takes its verdict as the decision (the original
    scripts' protocol; no position-bias information).

    Returns :data:`sflib.core.data.RANKING_COLUMNS` + :data:`RANKING_RECORD_COLUMNS` + the input's other
    columns. ``valid`` is True when every asked order gave a readable verdict; ``status`` is the
    worst of the orders (failed > invalid > ok); tokens are summed and ``cached`` is True only
    when every order came from the store. ``.attrs["stats"]`` counts requests (2 per pair).
    """
    judge = resolve_judge(judge)
    template = template or default_template(judge, "ranking")
    df = _with_ids(pairs, ["instruction", "input", "response1", "response2"],
                   ["instruction_id", "response_id_1", "response_id_2"])
    orders = ["12", "21"] if both_orders else ["12"]
    columns = [df[c].tolist() for c in ("instruction", "input", "response1", "response2")]  # plain lists: fast
    requests = [ranking_request(i, x, r1, r2, order, template)
                for order in orders for i, x, r1, r2 in zip(*columns)]
    res = annotate_with_store(judge, requests, store, template=template, parse=parse_choice,
                              retry_invalid=retry_invalid, desc=f"rank ({judge.name})", progress=progress,
                              mode=mode, batch=batch)
    n = len(df)
    parts = {order: res.iloc[k * n:(k + 1) * n].reset_index(drop=True) for k, order in enumerate(orders)}
    out = df.copy()
    for order in ("12", "21"):
        part = parts.get(order)
        if part is None:
            out[f"verdict_{order}"] = np.nan
            out[f"raw_{order}"] = None
            continue
        out[f"verdict_{order}"] = part["value"].where(part["valid"]).values
        out[f"raw_{order}"] = part["raw"].values
    out["decision"] = [combine_verdicts(a, b, both_orders) for a, b in zip(out["verdict_12"], out["verdict_21"])]
    # P(response 1 better), position-corrected across the two orders, where the judge returned logprobs
    out["p_a"] = combine_orders(soft_values(parts["12"]), soft_values(parts["21"]) if "21" in parts else None)
    out["valid"] = out["decision"].notna()
    out["status"] = [_worst(*s) for s in zip(*(parts[o]["status"] for o in orders))]
    out["error"] = [
        "; ".join(f"order {o}: {e}" for o, e in zip(orders, errs) if isinstance(e, str) and e) or None
        for errs in zip(*(parts[o]["error"] for o in orders))]
    out["judge"] = parts["12"]["judge"].values
    out["template_version"] = template_version(template)
    out["prompt_tokens"] = sum(parts[o]["prompt_tokens"].fillna(0).astype(int).values for o in orders)
    out["completion_tokens"] = sum(parts[o]["completion_tokens"].fillna(0).astype(int).values for o in orders)
    out["cached"] = np.logical_and.reduce([parts[o]["cached"].astype(bool).values for o in orders])
    out = _front(out, d.RANKING_COLUMNS + RANKING_RECORD_COLUMNS)
    out.attrs["stats"] = dict(res.attrs["stats"], pairs=n, orders=len(orders))
    return out


def position_bias(rankings: pd.DataFrame) -> dict:
    """How often the judge picks the first-shown output, per order, over pairs valid in both orders.

    Keys: ``pairs`` (valid in both orders), ``first_pick_rate_12`` / ``first_pick_rate_21`` (share
    of pairs where the judge picked Output (a) in that order), ``first_pick_rate`` (both orders
    together; 0.5 means no position preference), ``disagreement_rate`` (share where the two orders
    disagree, i.e. the same position was picked twice: these are the ``equal`` decisions),
    ``first_first`` / ``second_second`` (disagreements picking the first / the second position
    twice), ``agree`` (pairs where both orders chose the same response).
    """
    v12, v21 = rankings["verdict_12"], rankings["verdict_21"]
    ok = v12.isin(["a", "b"]) & v21.isin(["a", "b"])
    v12, v21 = v12[ok], v21[ok]
    n = int(ok.sum())

    def share(mask) -> float:
        return float(mask.sum() / n) if n else float("nan")

    first_first = int(((v12 == "a") & (v21 == "a")).sum())
    second_second = int(((v12 == "b") & (v21 == "b")).sum())
    return {
        "pairs": n,
        "first_pick_rate_12": share(v12 == "a"),
        "first_pick_rate_21": share(v21 == "a"),
        "first_pick_rate": float(((v12 == "a").sum() + (v21 == "a").sum()) / (2 * n)) if n else float("nan"),
        "disagreement_rate": share(v12 == v21),
        "first_first": first_first,
        "second_second": second_second,
        "agree": n - first_first - second_second,
    }


def make_pairs(responses: pd.DataFrame) -> pd.DataFrame:
    """Every unordered pair of distinct responses per instruction (k·(k−1)/2), via :func:`sflib.core.data.all_pairs`.

    Identical response texts (same ``response_id``) are paired once only. Instruction-level
    columns ``source`` / ``dataset`` are carried over when present.
    """
    df = _with_ids(responses, ["instruction", "input", "response"], ["instruction_id", "response_id"])
    pairs = d.all_pairs(df)
    extra = [c for c in ("source", "dataset") if c in df.columns]
    if extra:
        first = df.drop_duplicates("instruction_id").set_index("instruction_id")[extra]
        pairs = pairs.join(first, on="instruction_id")
    return pairs
