"""The annotation engine: ask a judge many things, cache every answer, lose nothing.

:func:`annotate` is what ``sflib.feedback.ratings``, ``sflib.feedback.rankings`` and ``sflib.evaluation`` call. It

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
   ``df.attrs["stats"]``, and a soft (logprob-weighted) verdict beside the parsed one
   (:mod:`sflib.feedback.logprobs`).

Online (``mode="online"``), each request is written to the store's ``in_flight`` table just before
it is sent and removed with its answer, so after a kill the next run reports how many it asks
again (``stats["in_flight_repaid"]``: the only requests a kill can make you pay twice). With a
store, each request is also *claimed* just before it is sent (:mod:`sflib.feedback.claims`): several
processes may annotate into one store at once, each item is asked by one of them, and a run takes
the others' answers from the store (``stats["left_to_other_run"]``), waiting for them at the end.
``mode="batch"`` goes through the provider's Batch API instead (:mod:`sflib.judges.batch`): half
price, and nothing is submitted twice whatever the moment of a kill.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Callable

import pandas as pd
from tqdm.auto import tqdm

from ..core import costs
from . import logprobs as lp
from ..judges.base import Completion, Judge, Request
from .claims import POLL_S, ClaimRun
from .store import AnnotationStore

log = logging.getLogger(__name__)

#: columns of the frame :func:`annotate` returns, in order
RESULT_COLUMNS = ["key", "value", "valid", "status", "raw", "error", "prompt_tokens",
                  "completion_tokens", "latency_s", "attempts", "cached", "judge", "soft",
                  "soft_source"]
MODES = ("online", "batch")

Parser = Callable[[str], "tuple[Any, bool]"]
SoftReader = Callable[[Any, Any], "tuple[float | None, dict]"]


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


class Recorder:
    """Parses completions, stores them and keeps this run's rows and counts (online and batch)."""

    def __init__(self, judge: Judge, store: AnnotationStore | None, template_version: str,
                 parse: Parser, soft: SoftReader | None):
        self.judge, self.store, self.template_version = judge, store, template_version
        self.parse, self.soft = parse, soft
        self.rows: dict[str, dict] = {}
        self.counts = {"ok": 0, "invalid": 0, "failed": 0, "logprobs_missing": 0}
        self.spent = {"prompt_tokens": 0, "completion_tokens": 0}
        self.wants_logprobs = bool((judge.params or {}).get("logprobs"))

    def cached(self, key: str, row: dict) -> None:
        summary = row.get("logprobs") or {}
        self.rows[key] = dict(key=key, value=row["value"], valid=row["valid"], status=row["status"],
                              raw=row["raw"], error=row["error"], prompt_tokens=row["prompt_tokens"],
                              completion_tokens=row["completion_tokens"], latency_s=row["latency_s"],
                              attempts=row["attempts"], cached=True, judge=row["judge"],
                              soft=row.get("soft"), soft_source=summary.get("source"))

    def record(self, key: str, request: Request, completion: Completion) -> dict:
        result = _read(completion, self.parse)
        soft, summary = None, None
        if self.soft is not None and result["status"] != "failed":
            try:
                soft, summary = self.soft(completion.logprobs, result["value"])
            except Exception as e:  # a reader bug must not lose the reply
                soft, summary = None, {"source": None, "reason": f"{type(e).__name__}: {e}"}
            if self.wants_logprobs and summary.get("source") != "logprobs":
                self.counts["logprobs_missing"] += 1
        row = dict(key=key, raw=completion.text, prompt_tokens=completion.prompt_tokens,
                   completion_tokens=completion.completion_tokens, latency_s=completion.latency_s,
                   attempts=completion.attempts, cached=False, judge=self.judge.name, soft=soft,
                   soft_source=(summary or {}).get("source"), **result)
        if self.store is not None:
            self.store.put(key, judge=self.judge.name, model=self.judge.model,
                           template_version=self.template_version, params=self.judge.params,
                           messages=request.messages, meta=request.meta, status=row["status"],
                           raw=row["raw"], value=row["value"], valid=row["valid"],
                           error=row["error"], prompt_tokens=row["prompt_tokens"],
                           completion_tokens=row["completion_tokens"], latency_s=row["latency_s"],
                           attempts=row["attempts"], soft=soft, logprobs=summary)
        self.rows[key] = row
        self.counts[row["status"]] += 1
        self.spent["prompt_tokens"] += row["prompt_tokens"]
        self.spent["completion_tokens"] += row["completion_tokens"]
        return row


def annotate(judge: Judge, requests: list[Request], *, store: AnnotationStore | None,
             template_version: str, parse: Parser, retry_invalid: bool = False, desc: str = "",
             progress: bool = True, mode: str = "online", soft: SoftReader | None | bool = None,
             batch: dict | None = None) -> pd.DataFrame:
    """Ask ``judge`` every request (or reuse the stored answer) and return one row per request.

    Columns: key, value, valid, status (ok | invalid | failed), raw, error, prompt_tokens,
    completion_tokens, latency_s, attempts, cached (answer came from the store), judge, soft (the
    logprob-weighted verdict: a rating's expected score, a pair order's P(first shown wins);
    the text verdict as a number where the provider gave no logprobs), soft_source
    (``logprobs`` | ``text`` | None). ``df.attrs["stats"]``: requests, cached, called, ok,
    invalid, failed, prompt_tokens, completion_tokens (spent in *this* run), cost_usd (this run,
    at the batch price in batch mode; NaN for an unknown price), wall_s, mode,
    logprobs_missing (replies without usable logprobs although the judge asked for them),
    in_flight_repaid (requests a killed earlier run had sent without storing the answer, asked
    again now: the provider may bill them twice), left_to_other_run (items another run on the
    same store was asking: taken from the store, not asked), claims_taken_over (items claimed by a
    run that died). ``store=None`` asks everything, keeps nothing.

    ``mode="batch"``: send the requests through the provider's Batch API (half price, results
    within the completion window; :mod:`sflib.judges.batch`, options in ``batch``, e.g.
    ``{"poll_s": 5, "max_wait_s": 3600}``; by default polls back off from 1 s to 30 s); needs a store, which makes it resumable.
    ``soft``: a reader ``(logprobs, parsed value) -> (soft, summary)``; by default the one that
    goes with ``parse`` (:func:`sflib.feedback.logprobs.reader_for`); ``False`` for none.

    Raises only for configuration errors found before any answer arrived (e.g. a missing API
    key); a judge that crashes mid-run has its unanswered requests stored as ``failed``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "batch" and store is None:
        raise ValueError("mode='batch' needs a store: the batch ids are kept there so that a "
                         "killed run resumes instead of submitting again")
    t0 = time.perf_counter()
    requests = list(requests)
    keys = [request_key(judge, r, template_version) for r in requests]
    stored = store.get_many(keys, with_request=False) if store is not None else {}  # answers only: fast
    reader = None if soft is False else (soft or lp.reader_for(parse))
    rec = Recorder(judge, store, template_version, parse, reader)

    for key, row in stored.items():
        if row["status"] == "ok" or (row["status"] == "invalid" and not retry_invalid):
            rec.cached(key, row)
    n_cached = sum(1 for k in keys if k in rec.rows)

    # unique keys still to ask, first occurrence wins
    todo: dict[str, Request] = {}
    for key, request in zip(keys, requests):
        if key not in rec.rows and key not in todo:
            todo[key] = request
    extra: dict[str, Any] = {"mode": mode}
    if todo and mode == "batch":
        from ..judges.batch import run_batch

        extra.update(run_batch(judge, todo, store=store, recorder=rec,
                               template_version=template_version, progress=progress,
                               desc=desc, **(batch or {})))
    elif todo:
        extra.update(_online(judge, todo, store, rec, desc, progress))

    out = pd.DataFrame([rec.rows[k] for k in keys], columns=RESULT_COLUMNS)
    if len(out):
        out["valid"] = out["valid"].astype(bool)
        out["cached"] = out["cached"].astype(bool)
        out["soft"] = pd.to_numeric(out["soft"], errors="coerce").astype(float)
    spent = rec.spent
    cost = costs.cost(judge.name, spent["prompt_tokens"], spent["completion_tokens"])
    if cost is None:
        cost = costs.cost(judge.model, spent["prompt_tokens"], spent["completion_tokens"])
    if cost is not None and mode == "batch":
        from ..judges.batch import BATCH_PRICE_FACTOR

        cost *= BATCH_PRICE_FACTOR
    stats = dict(requests=len(requests), cached=n_cached,
                 called=len(todo) - int(extra.get("left_to_other_run", 0)),
                 ok=int((out["status"] == "ok").sum()) if len(out) else 0,
                 invalid=int((out["status"] == "invalid").sum()) if len(out) else 0,
                 failed=int((out["status"] == "failed").sum()) if len(out) else 0,
                 prompt_tokens=spent["prompt_tokens"], completion_tokens=spent["completion_tokens"],
                 cost_usd=float("nan") if cost is None else cost,
                 wall_s=time.perf_counter() - t0, logprobs_missing=rec.counts["logprobs_missing"],
                 **{"in_flight_repaid": 0, **extra})
    out.attrs["stats"] = stats
    if stats["logprobs_missing"]:
        log.warning("%s: %d replies came without usable logprobs; their soft verdict is the text "
                    "verdict (soft_source='text')", judge.name, stats["logprobs_missing"])
    if stats["failed"] and not getattr(judge, "answers_on_retry", True):
        log.info("%s: %d of %d items not recorded (this judge only replays answers)", judge.name,
                 stats["failed"], len(requests))
    elif stats["failed"] and store is not None:
        log.warning("%s: %d of %d requests failed; they are stored with status 'failed' and the "
                    "next run retries them (see store.failures())", judge.name, stats["failed"],
                    len(requests))
    elif stats["failed"]:
        log.warning("%s: %d of %d requests failed (no store: they are in the returned rows with "
                    "status 'failed' and their error)", judge.name, stats["failed"], len(requests))
    log.info("%s: %s", judge.name, stats)
    return out


def _online(judge: Judge, todo: dict[str, Request], store: AnnotationStore | None, rec: Recorder,
            desc: str, progress: bool) -> dict:
    """Ask the judge directly; each answer is stored as it arrives. Returns extra stats.

    With a store and a judge that supports claims, each request is claimed just before it is sent
    (:mod:`sflib.feedback.claims`): items another live run on the same store is asking are left to
    it and taken from the store when they land (this run waits for them at the end, and takes over
    the claims of a run that died)."""
    extra = {"in_flight_repaid": 0, "left_to_other_run": 0, "claims_taken_over": 0}
    bar = tqdm(total=len(todo), desc=desc or f"{judge.name}", unit="req",
               disable=not progress, dynamic_ncols=True)
    try:
        if store is None or not getattr(judge, "supports_claims", False):
            kwargs, run_id = {}, uuid.uuid4().hex[:12]
            if store is not None and getattr(judge, "reports_starts", False):
                # requests a killed run sent but never stored: possibly billed; asked again now
                stale = set(store.in_flight(judge.name)["key"])
                extra["in_flight_repaid"] = len(stale & set(todo))
                keys = list(todo)
                kwargs["on_start"] = lambda i: store.mark_in_flight(keys[i], judge=judge.name,
                                                                    run_id=run_id)
            _ask(judge, todo, rec, bar, kwargs)
        else:
            with ClaimRun(store, judge.name) as run:
                _ask_claimed(judge, todo, rec, bar, run)
                extra.update(run.counts)
    finally:
        bar.close()
    if extra["in_flight_repaid"]:
        log.warning("%s: %d requests were in flight when an earlier run stopped; the provider "
                    "may have billed them, and they were asked again", judge.name,
                    extra["in_flight_repaid"])
    return extra


def _ask_claimed(judge: Judge, todo: dict[str, Request], rec: Recorder, bar, run: ClaimRun) -> None:
    """Ask what this run can claim; wait for what other live runs ask, take theirs over if they die."""
    pending = dict(todo)
    waited = False
    while pending:
        free = run.free(list(pending))
        if free:
            skipped = _ask(judge, {k: pending[k] for k in free}, rec, bar, {}, run)
            pending = {k: v for k, v in pending.items() if k not in rec.rows or k in skipped}
        landed = run.landed(list(pending))
        for key, row in landed.items():  # answered by another run: take it from the store
            rec.cached(key, row)
            run.counts["left_to_other_run"] += 1
            bar.update(1)
            del pending[key]
        if pending and not free:
            if not waited:
                log.warning("%s: %d items are being asked by another run on this store (%s); "
                            "waiting for their answers instead of paying twice", judge.name,
                            len(pending), run.owners(pending))
                waited = True
            bar.set_postfix_str(f"waiting for {len(pending)} asked by another run", refresh=True)
            time.sleep(POLL_S)
    if run.counts["left_to_other_run"]:
        log.warning("%s: %d items were left to another run on this store and taken from it",
                    judge.name, run.counts["left_to_other_run"])


def _ask(judge: Judge, todo: dict[str, Request], rec: Recorder, bar, kwargs: dict,
         run: ClaimRun | None = None) -> set[str]:
    """One ``judge.complete`` over ``todo``; returns the keys the judge skipped (claimed elsewhere)."""
    todo_keys = list(todo)
    todo_requests = [todo[k] for k in todo_keys]
    if run is not None:
        kwargs = dict(kwargs, claim=_Claimer(run, todo_keys), on_start=lambda i: run.mark_sent([todo_keys[i]]))
    answered: set[int] = set()
    skipped: set[str] = set()
    completions = judge.complete(todo_requests, **kwargs)
    try:
        for index, completion in completions:
            if index in answered or not 0 <= index < len(todo_keys):
                log.warning("judge %s yielded an unexpected index %r; ignored", judge.name, index)
                continue
            answered.add(index)
            if completion is None:  # not claimed: another run asks it, or its answer landed
                skipped.add(todo_keys[index])
                continue
            rec.record(todo_keys[index], todo_requests[index], completion)
            bar.update(1)
            bar.set_postfix({k: rec.counts[k] for k in ("ok", "invalid", "failed")}, refresh=False)
    except Exception as e:
        if not answered:
            raise  # a configuration error before anything happened: tell the user now
        message = f"judge crashed before answering: {type(e).__name__}: {e}"
        log.error("%s (%d requests stored as failed; a re-run retries them)",
                  message, len(todo_keys) - len(answered))
    else:
        message = "judge returned no completion for this request"
    finally:
        # stop the judge now, also on Ctrl-C (a notebook's traceback would keep it running)
        close = getattr(completions, "close", None)
        if close is not None:
            close()
    for index, key in enumerate(todo_keys):
        if index not in answered:
            rec.record(key, todo_requests[index], Completion(error=message, attempts=0))
    return skipped


class _Claimer:
    """``claim(index)`` for the judge: claims the key and the next few in one transaction (workers
    take indices in order, so the next ones are asked next), cheap enough for every request."""

    AHEAD = 8

    def __init__(self, run: ClaimRun, keys: list[str]):
        self.run, self.keys = run, keys
        self.answers: dict[int, bool] = {}
        self.lock = threading.Lock()

    def __call__(self, index: int) -> bool:
        with self.lock:
            if index not in self.answers:
                chunk = [i for i in range(index, min(index + self.AHEAD, len(self.keys)))
                         if i not in self.answers]
                claimed = self.run.claim_each([self.keys[i] for i in chunk])
                self.answers.update({i: self.keys[i] in claimed for i in chunk})
            return self.answers.pop(index)


def format_stats(stats: dict) -> str:
    """One line for a notebook: ``1000 requests: 990 ok, 8 invalid, 2 failed; 40 cached; ...``."""
    cost = stats.get("cost_usd")
    cost_text = "cost unknown" if cost is None or cost != cost else f"${cost:.4f}"
    return (f"{stats['requests']} requests: {stats['ok']} ok, {stats['invalid']} invalid, "
            f"{stats['failed']} failed; {stats['cached']} cached, {stats['called']} asked"
            + (f", {stats['left_to_other_run']} left to another run"
               if stats.get("left_to_other_run") else "") + "; "
            f"{stats['prompt_tokens']}+{stats['completion_tokens']} tokens, {cost_text}, "
            f"{stats['wall_s']:.1f} s")
