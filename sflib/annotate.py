"""The annotation engine: ask a judge many things, cache every answer, lose nothing.

:func:`annotate` is what ``sflib.ratings``, ``sflib.rankings`` and ``sflib.evaluation`` call. It

1. computes a cache key per request (judge name, template version, decoding params, rendered
   messages, and ``request.meta["cache_salt"]`` when present, e.g. a sample index);
2. reuses stored answers (``ok`` always, ``invalid`` unless ``retry_invalid=True``) and asks the
   judge only for the rest (previous failures included); identical requests are asked once;
3. parses each reply as it arrives and writes it to the store immediately, so a run killed at any
   moment loses at most the requests in flight, and a re-run resumes;
4. turns every problem with one request (API error, timeout, unparsable reply, a parser that
   raises) into a stored row with ``status`` ``failed`` or ``invalid`` and an ``error`` — never an
   exception and never a silently missing row;
5. returns one row per request, in input order, with token and cost accounting in
   ``df.attrs["stats"]``.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import pandas as pd
from tqdm.auto import tqdm

from . import costs
from .judges.base import Completion, Judge, Request
from .store import AnnotationStore

log = logging.getLogger(__name__)

#: columns of the frame :func:`annotate` returns, in order
RESULT_COLUMNS = ["key", "value", "valid", "status", "raw", "error", "prompt_tokens",
                  "completion_tokens", "latency_s", "attempts", "cached", "judge"]

Parser = Callable[[str], "tuple[Any, bool]"]


def request_key(judge: Judge, request: Request, template_version: str) -> str:
    """The cache key of one request for one judge (see :meth:`AnnotationStore.key`)."""
    salt = request.meta.get("cache_salt", "") if request.meta else ""
    return AnnotationStore.key(judge.name, template_version, judge.params, request.messages,
                               salt=str(salt))


def _read(completion: Completion, parse: Parser) -> dict:
    """Status, value and error for one completion (a parser that raises gives ``invalid``)."""
    if not completion.ok:
        return dict(status="failed", value=None, valid=False,
                    error=completion.error or "judge returned no text")
    try:
        value, valid = parse(completion.text)
    except Exception as e:  # a parser bug must not lose the reply: keep it, mark it invalid
        return dict(status="invalid", value=None, valid=False,
                    error=f"parser raised {type(e).__name__}: {e}")
    valid = bool(valid)
    return dict(status="ok" if valid else "invalid", value=value, valid=valid,
                error=None if valid else "reply could not be parsed")


def annotate(judge: Judge, requests: list[Request], *, store: AnnotationStore | None,
             template_version: str, parse: Parser, retry_invalid: bool = False, desc: str = "",
             progress: bool = True) -> pd.DataFrame:
    """Ask ``judge`` every request (or reuse the stored answer) and return one row per request.

    Columns: key, value, valid, status (ok | invalid | failed), raw, error, prompt_tokens,
    completion_tokens, latency_s, attempts, cached (answer came from the store), judge.
    ``df.attrs["stats"]``: requests, cached, called, ok, invalid, failed, prompt_tokens,
    completion_tokens (spent in *this* run), cost_usd (this run; NaN for an unknown price),
    wall_s. ``store=None`` asks everything and keeps nothing.

    Raises only for configuration errors found before any answer arrived (e.g. a missing API
    key); a judge that crashes mid-run has its unanswered requests stored as ``failed``.
    """
    t0 = time.perf_counter()
    requests = list(requests)
    keys = [request_key(judge, r, template_version) for r in requests]
    stored = store.get_many(keys) if store is not None else {}

    rows: dict[str, dict] = {}  # key -> result row
    for key, row in stored.items():
        if row["status"] == "ok" or (row["status"] == "invalid" and not retry_invalid):
            rows[key] = dict(key=key, value=row["value"], valid=row["valid"], status=row["status"],
                             raw=row["raw"], error=row["error"], prompt_tokens=row["prompt_tokens"],
                             completion_tokens=row["completion_tokens"], latency_s=row["latency_s"],
                             attempts=row["attempts"], cached=True, judge=row["judge"])
    n_cached = sum(1 for k in keys if k in rows)

    # unique keys still to ask, first occurrence wins
    todo: dict[str, Request] = {}
    for key, request in zip(keys, requests):
        if key not in rows and key not in todo:
            todo[key] = request
    todo_keys = list(todo)
    todo_requests = [todo[k] for k in todo_keys]

    counts = {"ok": 0, "invalid": 0, "failed": 0}
    spent = {"prompt_tokens": 0, "completion_tokens": 0}

    def record(key: str, request: Request, completion: Completion) -> None:
        result = _read(completion, parse)
        row = dict(key=key, raw=completion.text, prompt_tokens=completion.prompt_tokens,
                   completion_tokens=completion.completion_tokens, latency_s=completion.latency_s,
                   attempts=completion.attempts, cached=False, judge=judge.name, **result)
        if store is not None:
            store.put(key, judge=judge.name, model=judge.model, template_version=template_version,
                      params=judge.params, messages=request.messages, meta=request.meta,
                      status=row["status"], raw=row["raw"], value=row["value"], valid=row["valid"],
                      error=row["error"], prompt_tokens=row["prompt_tokens"],
                      completion_tokens=row["completion_tokens"], latency_s=row["latency_s"],
                      attempts=row["attempts"])
        rows[key] = row
        counts[row["status"]] += 1
        spent["prompt_tokens"] += row["prompt_tokens"]
        spent["completion_tokens"] += row["completion_tokens"]

    if todo_requests:
        bar = tqdm(total=len(todo_requests), desc=desc or f"{judge.name}", unit="req",
                   disable=not progress, dynamic_ncols=True)
        answered: set[int] = set()
        completions = judge.complete(todo_requests)
        try:
            for index, completion in completions:
                if index in answered or not 0 <= index < len(todo_keys):
                    log.warning("judge %s yielded an unexpected index %r; ignored", judge.name, index)
                    continue
                answered.add(index)
                record(todo_keys[index], todo_requests[index], completion)
                bar.update(1)
                bar.set_postfix(counts, refresh=False)
        except Exception as e:
            if not answered:
                raise  # a configuration error before anything happened: tell the user now
            message = f"judge crashed before answering: {type(e).__name__}: {e}"
            log.error("%s (%d requests stored as failed; a re-run retries them)",
                      message, len(todo_keys) - len(answered))
        else:
            message = "judge returned no completion for this request"
        finally:
            bar.close()
            # stop the judge now, also on Ctrl-C (a notebook's traceback would keep it running)
            close = getattr(completions, "close", None)
            if close is not None:
                close()
        for index, key in enumerate(todo_keys):
            if index not in answered:
                record(key, todo_requests[index], Completion(error=message, attempts=0))

    out = pd.DataFrame([rows[k] for k in keys], columns=RESULT_COLUMNS)
    if len(out):
        out["valid"] = out["valid"].astype(bool)
        out["cached"] = out["cached"].astype(bool)
    cost = costs.cost(judge.name, spent["prompt_tokens"], spent["completion_tokens"])
    if cost is None:
        cost = costs.cost(judge.model, spent["prompt_tokens"], spent["completion_tokens"])
    stats = dict(requests=len(requests), cached=n_cached, called=len(todo_requests),
                 ok=int((out["status"] == "ok").sum()) if len(out) else 0,
                 invalid=int((out["status"] == "invalid").sum()) if len(out) else 0,
                 failed=int((out["status"] == "failed").sum()) if len(out) else 0,
                 prompt_tokens=spent["prompt_tokens"], completion_tokens=spent["completion_tokens"],
                 cost_usd=float("nan") if cost is None else cost,
                 wall_s=time.perf_counter() - t0)
    out.attrs["stats"] = stats
    if stats["failed"] and store is not None:
        log.warning("%s: %d of %d requests failed; they are stored with status 'failed' and the "
                    "next run retries them (see store.failures())", judge.name, stats["failed"],
                    len(requests))
    elif stats["failed"]:
        log.warning("%s: %d of %d requests failed (no store: they are in the returned rows with "
                    "status 'failed' and their error)", judge.name, stats["failed"], len(requests))
    log.info("%s: %s", judge.name, stats)
    return out


def format_stats(stats: dict) -> str:
    """One line for a notebook: ``1000 requests: 990 ok, 8 invalid, 2 failed; 40 cached; ...``."""
    cost = stats.get("cost_usd")
    cost_text = "cost unknown" if cost is None or cost != cost else f"${cost:.4f}"
    return (f"{stats['requests']} requests: {stats['ok']} ok, {stats['invalid']} invalid, "
            f"{stats['failed']} failed; {stats['cached']} cached, {stats['called']} asked; "
            f"{stats['prompt_tokens']}+{stats['completion_tokens']} tokens, {cost_text}, "
            f"{stats['wall_s']:.1f} s")
