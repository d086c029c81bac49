"""Batch mode: a judge's requests through the provider's Batch API (``/v1/files`` + ``/v1/batches``),
at the batch price (50% of online), resumable after a kill at any point.

Used by ``annotate(..., mode="batch")`` with an :class:`~sflib.judges.openai_judge.OpenAIJudge`
(any OpenAI-compatible provider that has the Batch API). Every step is written to the store
(tables ``batches``, ``batch_requests``, ``batch_events``) before the next one starts:

1. **intent**: a job name (``sflib-<hex>``) and its request lines (custom_id = the annotation key)
   are committed; nothing has been sent yet;
2. **upload**: the JSONL file is uploaded under the name ``<job>.jsonl``; its file id is recorded.
   A run that finds a job still at its intent looks the file up by name (every page of the
   account's batch files) before uploading again;
3. **create**: the batch is created (``metadata.sflib_job`` = the job name); its batch id is
   recorded. A run that finds a job uploaded but without a batch id looks the batch up by its
   input file id (every page of the account's batches, newest first) before creating one. The
   create call itself is sent without the client's automatic retries (the OpenAI client sends no
   idempotency key, so a retry after a timeout or a 5xx could create a second, paid batch): after
   such an error the batch is looked up the same way, and only created again if it is not there;
4. **poll** (``batches.retrieve`` of the recorded batch id) until the provider's status is final
   (every ``poll_s`` seconds, by default 1 s at first, doubling up to 30 s: ``--poll`` on the CLI)
   (completed / expired / cancelled / failed);
5. **download**: each output line is parsed and stored as an annotation as it is read; the job is
   marked collected only after the whole output and error files were read, so a kill while
   downloading reads them again (nothing is asked again: the results are files).

Several runs on one store (two notebooks, a notebook and a CLI run): the job's intent is written
in one transaction that first leaves out every item already pending in an open job, so a set of
items has one live batch; a second run *attaches* to it (polls it and collects its answers) instead
of submitting its own. A job's upload and create are done by its owner (``batches.owner``, a run of
:mod:`sflib.feedback.claims` with a heartbeat); another run takes them over only when that owner is
dead or silent (and looks the file / batch up first). Answers another run collected are taken from
the store.

A provider's refusal (bad key, quota, model not found) ends the run with one line naming the cause
and the step (:class:`BatchError`, keys scrubbed); whatever was recorded stays, and a re-run resumes.

Lines with custom_ids we never sent, and an output file whose last line was cut off, are recorded
in ``batch_events`` (and counted in the run's stats). Requests with no result — in the error
file, past an expiry or a cancellation, missing from the output, or a reply without text — are
resubmitted *alone* in a new job (``max_rounds`` times), then stored as failed with the reason.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from tqdm.auto import tqdm

from ..feedback.claims import ClaimRun
from ..feedback.store import AnnotationStore
from .base import Completion, Judge, Request, provider_error
from .batch_collect import HOOKS, Collecting, _hook  # noqa: F401 - HOOKS: the tests' kill points
from .openai_judge import ConfigurationError

log = logging.getLogger(__name__)

#: batch price relative to online (OpenAI: 50%)
BATCH_PRICE_FACTOR = 0.5
ENDPOINT = "/v1/chat/completions"
FINAL = ("completed", "expired", "cancelled", "failed")
OPEN = ("intent", "uploaded", "submitted")


class BatchError(ConfigurationError):
    """The provider refused a Batch API step (one line: the step and the cause; no key in it)."""


def _client(judge: Judge):
    import openai

    from .openai_judge import OPENAI_URL, ConfigurationError, OpenAIJudge

    if not isinstance(judge, OpenAIJudge):
        raise ConfigurationError(f"mode='batch' needs an OpenAI-compatible judge (openai:<model>), "
                                 f"not {judge.name}")
    return openai.OpenAI(api_key=judge._key(), base_url=judge.base_url or OPENAI_URL,
                         timeout=judge.timeout, max_retries=judge.max_retries)


def _retryable(error: Exception) -> bool:
    """Whether the openai client would retry this error (a timeout or a 5xx: it may have been done)."""
    status = getattr(error, "status_code", None)  # None: no reply (connection error, timeout)
    return status is None or status in (408, 409, 429) or status >= 500


class BatchRun(Collecting):
    """One ``annotate(mode="batch")`` call: drives this judge's open jobs and creates new ones."""

    def __init__(self, judge: Judge, todo: dict[str, Request], store: AnnotationStore, recorder,
                 template_version: str, client=None, poll_s: float | None = None,
                 max_wait_s: float | None = None, max_rounds: int = 3, max_per_batch: int = 50_000):
        self.judge, self.todo, self.store, self.rec = judge, todo, store, recorder
        self.tv, self.client = template_version, client or _client(judge)
        if poll_s is not None and poll_s <= 0:
            raise ValueError(f"poll_s must be > 0 seconds, got {poll_s}")
        self.poll_s, self.max_wait_s = poll_s, max_wait_s
        self.max_rounds, self.max_per_batch = max_rounds, max_per_batch
        self.stats = dict(batches_created=0, batches_resumed=0, batch_resubmitted=0,
                          batch_unknown_ids=0, batch_truncated_outputs=0, batch_pending=0,
                          batches_attached=0, left_to_other_run=0)
        self.run_: ClaimRun | None = None  # this run's owner record (set by run())
        self.step = "starting"  # the Batch API call under way, for an error message
        self.errors: dict[str, str] = {}  # key -> why it has no result yet
        self.resumed: dict[str, str] = {}  # local_id -> state, of jobs an earlier run left open

    # ----------------------------------------------------------------------------- records
    def _event(self, local_id: str | None, kind: str, detail: str) -> None:
        self.store.execute("INSERT INTO batch_events (local_id, kind, detail, created_at) "
                           "VALUES (?, ?, ?, ?)", (local_id, kind, detail[:2000], time.time()))
        log.warning("batch %s: %s: %s", local_id, kind, detail[:300])

    def _set(self, local_id: str, **fields: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in fields)
        self.store.execute(f"UPDATE batches SET {cols}, updated_at = ? WHERE local_id = ?",
                           (*fields.values(), time.time(), local_id))

    def _open_jobs(self) -> list[dict]:
        cols = ["local_id", "state", "input_file_id", "batch_id", "round", "owner"]
        rows = self.store.execute(
            f"SELECT {', '.join(cols)} FROM batches WHERE judge = ? AND template_version = ? "
            f"AND state IN ({','.join('?' * len(OPEN))}) ORDER BY created_at",
            (self.judge.name, self.tv, *OPEN))
        return [dict(zip(cols, r)) for r in rows]

    _ATTACHED_SQL = ("SELECT r.key FROM batch_requests r JOIN batches b ON r.local_id = b.local_id "
                     f"WHERE r.state = 'pending' AND b.judge = ? AND b.state IN ({','.join('?' * len(OPEN))})")

    def _attached(self) -> set[str]:
        return {r[0] for r in self.store.execute(self._ATTACHED_SQL, (self.judge.name, *OPEN))}

    def _new_jobs(self, candidates: list[str], round_: int) -> int:
        """Write the intent of jobs for the candidates no open job holds (one transaction, so two
        runs never submit the same item twice); returns how many items they hold."""
        with self.store.transaction() as conn:
            attached = {r[0] for r in conn.execute(self._ATTACHED_SQL, (self.judge.name, *OPEN))}
            keys = [k for k in candidates if k not in attached]
            new = []
            for start in range(0, len(keys), self.max_per_batch):
                chunk = keys[start:start + self.max_per_batch]
                local_id = f"sflib-{uuid.uuid4().hex[:16]}"
                now = time.time()
                conn.execute("INSERT INTO batches (local_id, judge, template_version, endpoint, "
                             "state, n_requests, round, created_at, updated_at, owner) "
                             "VALUES (?, ?, ?, ?, 'intent', ?, ?, ?, ?, ?)",
                             (local_id, self.judge.name, self.tv, ENDPOINT, len(chunk), round_, now,
                              now, self.run_.run_id))
                rows, shared = [], {}
                for key in chunk:
                    r = self.todo[key]
                    body = {"model": self.judge.model, "messages": r.messages, **self.judge.params,
                            **(r.params or {})}
                    # compressed like an annotation's prompt, long texts kept once (sflib.feedback.store_codec)
                    blob, meta, texts = self.store.pack(body, r.meta or {})
                    shared.update(dict.fromkeys(texts))
                    rows.append((local_id, key, blob, meta))
                for sql, args in shared:
                    conn.execute(sql, tuple(args))
                conn.executemany("INSERT INTO batch_requests (local_id, key, body, meta, state) "
                                 "VALUES (?, ?, ?, ?, 'pending')", rows)
                self.stats["batches_created"] += 1
                new.append(local_id)
        for local_id in new:
            _hook("intent", local_id=local_id)  # the intent is committed, nothing sent yet
        return len(keys)

    def _mine(self, job: dict) -> bool:
        """Whether this run uploads/creates ``job``: it made it, or its owner is dead (then this
        run takes it over, and looks its file / batch up before doing anything)."""
        if job["owner"] == self.run_.run_id:
            return True
        with self.store.transaction() as conn:
            owner = conn.execute("SELECT owner FROM batches WHERE local_id = ?",
                                 (job["local_id"],)).fetchone()[0]
            if owner and self.run_._owner(conn, owner)[0]:
                if job["local_id"] not in self.attached_to:
                    self.attached_to.add(job["local_id"])
                    self.stats["batches_attached"] += 1
                return False  # a live run is uploading/creating it: wait for it
            conn.execute("UPDATE batches SET owner = ? WHERE local_id = ?",
                         (self.run_.run_id, job["local_id"]))
        self.resumed.setdefault(job["local_id"], job["state"])
        job["owner"] = self.run_.run_id
        return True

    # ------------------------------------------------------------------------------- steps
    def _upload(self, job: dict) -> None:
        name = f"{job['local_id']}.jsonl"
        found = None
        if self.resumed.get(job["local_id"]) == "intent":  # an earlier run may have uploaded it
            self.step = "files.list (looking up an earlier upload)"
            found = next((f for f in self.client.files.list(purpose="batch", order="desc")
                          if f.filename == name), None)  # iterating fetches every page
        if found is None:
            rows = self.store.execute("SELECT key, body, meta FROM batch_requests WHERE local_id = ? "
                                      "ORDER BY key", (job["local_id"],))
            bodies = self.store.unpack([(b, m) for _, b, m in rows])
            data = "".join(json.dumps({"custom_id": k, "method": "POST", "url": ENDPOINT,
                                       "body": json.loads(b)}) + "\n" for (k, _, _), (b, _) in zip(rows, bodies))
            self.step = "files.create (uploading the requests)"
            found = self.client.files.create(file=(name, data.encode("utf-8")), purpose="batch")
            _hook("uploaded", local_id=job["local_id"], file_id=found.id)
        self._set(job["local_id"], state="uploaded", input_file_id=found.id)
        job.update(state="uploaded", input_file_id=found.id)

    def _find_batch(self, input_file_id: str):
        """The account's batch reading ``input_file_id``, or None (every page, newest first)."""
        self.step = "batches.list (looking up an earlier batch)"
        return next((b for b in self.client.batches.list(limit=100)
                     if b.input_file_id == input_file_id), None)

    def _create(self, job: dict) -> None:
        import openai

        found = None
        if self.resumed.get(job["local_id"]) == "uploaded":  # an earlier run may have created it
            found = self._find_batch(job["input_file_id"])
        once = self.client.with_options(max_retries=0)  # a retried create could pay twice
        tries = 0
        while found is None:
            try:
                self.step = "batches.create"
                found = once.batches.create(input_file_id=job["input_file_id"], endpoint=ENDPOINT,
                                            completion_window="24h",
                                            metadata={"sflib_job": job["local_id"]})
            except (openai.APIConnectionError, openai.APIStatusError) as error:
                if not _retryable(error) or tries >= self.judge.max_retries:
                    raise
                tries += 1
                time.sleep(min(8.0, 0.5 * 2 ** (tries - 1)))
                found = self._find_batch(job["input_file_id"])  # the failed call may have created it
                if found is not None:
                    self._event(job["local_id"], "create_reply_lost",
                                f"batches.create failed ({type(error).__name__}) but created "
                                f"{found.id}; using it")
                continue
            _hook("created", local_id=job["local_id"], batch_id=found.id)
        self._set(job["local_id"], state="submitted", batch_id=found.id, remote_status=found.status)
        job.update(state="submitted", batch_id=found.id)

    def _poll(self, job: dict) -> bool:
        """True once the job is collected (its results stored or marked for resubmission)."""
        self.step = "batches.retrieve (polling)"
        batch = self.client.batches.retrieve(job["batch_id"])
        self._set(job["local_id"], remote_status=batch.status, output_file_id=batch.output_file_id,
                  error_file_id=batch.error_file_id)
        _hook("polling", local_id=job["local_id"], status=batch.status)
        if batch.status not in FINAL:
            return False
        self._collect(job, batch)
        return True

    # --------------------------------------------------------------------------------- run
    def run(self, progress: bool = True, desc: str = "") -> dict:
        import openai

        self.bar = tqdm(total=len(self.todo), desc=desc or f"{self.judge.name} (batch)", unit="req",
                        disable=not progress, dynamic_ncols=True)
        deadline = None if self.max_wait_s is None else time.monotonic() + self.max_wait_s
        self.attached_to: set[str] = set()
        try:
            with ClaimRun(self.store, self.judge.name) as self.run_:
                self._run(deadline)
        except (openai.APIStatusError, openai.APIConnectionError) as e:
            raise BatchError(f"batch mode: {self.step} failed: {provider_error(e, self.judge._key())}. "
                             "Nothing recorded is lost: fix the cause and run again to resume."
                             ) from None
        finally:
            self.bar.close()
        attached = self._attached()
        for key in self.todo:
            if key in self.rec.rows:
                continue
            if key in attached:  # still in a job: not a failure, a later run collects it
                self.stats["batch_pending"] += 1
                self.rec.rows[key] = dict(key=key, value=None, valid=False, status="failed", raw=None,
                                          error="pending in a batch job; re-run to collect it",
                                          prompt_tokens=0, completion_tokens=0, latency_s=0.0,
                                          attempts=0, cached=False, judge=self.judge.name,
                                          soft=None, soft_source=None)
            else:
                self.rec.record(key, self.todo[key], Completion(
                    error=f"{self.errors.get(key, 'no result')} (after {self.max_rounds + 1} batch jobs)",
                    attempts=self.max_rounds + 1))
        return self.stats

    def _take_landed(self) -> None:
        """Answers another run collected (or asked online) since this run started: from the store."""
        rest = [k for k in self.todo if k not in self.rec.rows]
        for key, row in self.run_.landed(rest).items():
            if row["status"] == "failed" and key in self._attached():
                continue  # a placeholder of a run that stopped waiting: the job still holds it
            self.rec.cached(key, row)
            self.stats["left_to_other_run"] += 1
            self.bar.update(1)

    def _run(self, deadline: float | None) -> None:
        jobs = self._open_jobs()
        self.stats["batches_resumed"] = len(jobs)
        self.resumed = {j["local_id"]: j["state"] for j in jobs}
        round_ = max([j["round"] for j in jobs], default=0)
        while True:
            self._take_landed()
            missing = [k for k in self.todo if k not in self.rec.rows]
            if missing and round_ <= self.max_rounds:
                resubmit = sum(k in self.errors for k in missing)
                if self._new_jobs(missing, round_):
                    self.stats["batch_resubmitted"] += resubmit
                    round_ += 1
            if not self._open_jobs():
                break
            if not self._drive(deadline):
                break  # out of time: the rest stays in its jobs for the next run

    def _drive(self, deadline: float | None) -> bool:
        """Advance every open job until all are collected; False when the deadline passed. Jobs
        another live run is uploading/creating are only watched (their state is re-read). Between
        polls it waits ``poll_s``, or by default :data:`POLL_FIRST_S` doubling up to :data:`POLL_MAX_S`
        (a small job is collected within seconds, a long one is not polled every second)."""
        waits = poll_waits(self.poll_s)
        while True:
            jobs = self._open_jobs()
            if not jobs:
                return True
            for job in jobs:
                if job["state"] in ("intent", "uploaded") and not self._mine(job):
                    continue
                if job["state"] == "intent":
                    self._upload(job)
                if job["state"] == "uploaded":
                    self._create(job)
                self._poll(job)
            self._take_landed()
            if not self._open_jobs():
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            wait = next(waits)
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            time.sleep(wait)


POLL_FIRST_S = 1.0
POLL_MAX_S = 30.0


def poll_waits(poll_s: float | None = None):
    """Seconds to wait before each next poll: ``poll_s`` every time, or by default 1, 2, 4, ... up to 30."""
    wait = POLL_FIRST_S
    while True:
        if poll_s is not None:
            yield float(poll_s)
        else:
            yield wait
            wait = min(POLL_MAX_S, wait * 2)


def run_batch(judge: Judge, todo: dict[str, Request], *, store: AnnotationStore, recorder,
              template_version: str, progress: bool = True, desc: str = "", **options: Any) -> dict:
    """Ask ``todo`` (key -> request) through the Batch API; results go through ``recorder``
    (:class:`sflib.feedback.annotate.Recorder`). Options: ``poll_s`` (None: 1 s at first, doubling up to
    30 s; a number: that many seconds every time; the CLI's ``--poll``), ``max_wait_s`` (None: until
    done), ``max_rounds`` (3 resubmissions), ``max_per_batch`` (50,000), ``client``."""
    return BatchRun(judge, todo, store, recorder, template_version, **options).run(progress, desc)


def cancel_jobs(judge: Judge, store: AnnotationStore, client=None) -> list[str]:
    """Cancel this judge's submitted, unfinished jobs; the next run collects what they answered
    and resubmits the rest. Returns the cancelled batch ids."""
    client = client or _client(judge)
    rows = store.execute("SELECT batch_id FROM batches WHERE judge = ? AND state = 'submitted'",
                         (judge.name,))
    out = []
    for (batch_id,) in rows:
        if client.batches.retrieve(batch_id).status not in FINAL:
            client.batches.cancel(batch_id)
            out.append(batch_id)
    return out
