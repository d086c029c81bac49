"""Batch mode, the download step (:mod:`sflib.judges.batch`): a final job's output and error files read
line by line into the store, the requests without a result marked for resubmission, and the collected
job's lines dropped (each answer marked ``batch = 1``, the freed pages given back to the disk).
"""
from __future__ import annotations

import json
from typing import Any, Callable

from .base import Request
from .replies import _completion, _usage

#: test hooks: ``HOOKS[point](**info)`` runs at intent / uploaded / created / polling / downloading
HOOKS: dict[str, Callable[..., None]] = {}


def _hook(point: str, **info: Any) -> None:
    if point in HOOKS:
        HOOKS[point](**info)


class Collecting:
    """The download step of :class:`sflib.judges.batch.BatchRun` (which provides ``store``, ``client``,
    ``rec``, ``todo``, ``stats``, ``errors``, ``run_``, ``bar``, ``step`` and ``_event`` / ``_set``)."""

    def _collect(self, job: dict, batch) -> None:
        local_id = job["local_id"]
        rows = self.store.execute("SELECT key, body, meta, state FROM batch_requests WHERE local_id = ?",
                                  (local_id,))
        unpacked = self.store.unpack([(b, m) for _, b, m, _ in rows])
        lines = {k: (json.loads(b), json.loads(m)) for (k, _, _, _), (b, m) in zip(rows, unpacked)}
        seen: set[str] = set()
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            self.step = "files.content (downloading the results)"
            text = self.client.files.content(file_id).text
            raw_lines = text.split("\n")
            for i, raw in enumerate(raw_lines):
                if not raw.strip():
                    continue
                try:
                    line = json.loads(raw)
                    key = line["custom_id"]
                except (ValueError, KeyError, TypeError):
                    last = i == len(raw_lines) - 1
                    kind = "truncated_output" if last else "malformed_line"
                    self.stats["batch_truncated_outputs"] += int(last)
                    self._event(local_id, kind, f"file {file_id} line {i + 1}: {raw[:200]!r}")
                    continue
                if key not in lines:
                    self.stats["batch_unknown_ids"] += 1
                    self._event(local_id, "unknown_custom_id", f"file {file_id} line {i + 1}: {key!r}")
                    continue
                seen.add(key)
                self._result(local_id, key, lines[key], line, job["round"])
                _hook("downloading", local_id=local_id, line=i)
        unanswered = [k for k in lines if k not in seen]
        if unanswered:
            why = f"no result in batch {job['batch_id']} (status {batch.status})"
            self._event(local_id, f"{batch.status}_missing_results" if batch.status != "completed"
                        else "missing_ids", f"{len(unanswered)} requests: {why}")
            for key in unanswered:
                self._resubmit(local_id, key, why)
        # a collected line's request lives on in its annotation: mark the answer as batch-priced and drop
        # the line (blanking it left half-empty pages: ~0.9 KB an answer at 125,000; the batches row stays)
        with self.store.transaction() as conn:
            conn.execute("UPDATE annotations SET batch = 1 WHERE key IN (SELECT key FROM batch_requests "
                         "WHERE local_id = ? AND state = 'done')", (local_id,))
            conn.execute("DELETE FROM batch_requests WHERE local_id = ? AND state = 'done'", (local_id,))
        self._set(local_id, state="collected")
        self.store.reclaim()

    def _result(self, local_id: str, key: str, stored: tuple[dict, dict], line: dict,
                round_: int) -> None:
        completion, why = _completion(line, round_ + 1)
        if completion is None:
            spent = _usage(line)  # a reply without text is billed too
            self.rec.spent["prompt_tokens"] += spent[0]
            self.rec.spent["completion_tokens"] += spent[1]
            self._resubmit(local_id, key, why)
            return
        body, meta = stored
        if key in self.rec.rows:  # taken from the store already (another run collected it)
            self._done(local_id, key)
            return
        landed = self.run_.landed([key]) if key in self.todo else {}
        if landed and landed[key]["status"] != "failed":  # collected by another run just now
            self.rec.cached(key, landed[key])
            self.stats["left_to_other_run"] += 1
            self._done(local_id, key)
            return
        request = self.todo.get(key)
        if request is None:  # a job of an earlier run: keep its answer unless already stored
            request = Request(messages=body["messages"], meta=meta)
            done = self.store.get(key)
            if done is None or done["status"] != "ok":
                self.rec.record(key, request, completion)
        else:
            self.rec.record(key, request, completion)
        self._done(local_id, key)

    def _done(self, local_id: str, key: str) -> None:
        self.errors.pop(key, None)
        self.store.execute("UPDATE batch_requests SET state = 'done' WHERE local_id = ? AND key = ?",
                           (local_id, key))
        if self.bar is not None and key in self.todo:
            self.bar.update(1)

    def _resubmit(self, local_id: str, key: str, why: str) -> None:
        self.errors[key] = why
        self.store.execute("UPDATE batch_requests SET state = 'resubmit', error = ? "
                           "WHERE local_id = ? AND key = ?", (why, local_id, key))
