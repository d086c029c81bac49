"""The Batch API half of the fake OpenAI server (tests/fake_openai.py): ``/v1/files`` and
``/v1/batches``, in memory, answered by the same deterministic chat replies.

Options (keywords of :class:`fake_openai.FakeOpenAI`):

- ``batch_delay``: seconds from creation until a batch is finished (``in_progress`` before);
- ``batch_outcomes``: outcomes for the batches in creation order (a list; beyond it
  ``"completed"``), or a callable ``(batch_number, custom_ids) -> outcome``. Outcomes:
  ``completed``; ``expired`` (the first half answered, the rest not: status ``expired``);
  ``failed`` (validation failed, no output at all); ``truncated`` (the output file stops in the
  middle of its last line); ``unknown_id`` (one extra output line whose custom_id was never
  submitted); ``missing`` (one line silently absent); ``partial_errors`` (every third request
  answered with a 500 in the error file).
  A batch cancelled by the client (``POST /v1/batches/{id}/cancel``) before it finished gets the
  first half answered and status ``cancelled``;
- ``batch_create_faults``: what the client hears from ``POST /v1/batches`` in creation order (a
  list; beyond it a normal reply): ``"ok"``, ``"500"`` (the batch *is* created, the reply is a
  500) or ``"hang"`` (created, the reply comes after ``hang_s``: a client timeout).

``GET /v1/batches`` and ``GET /v1/files`` page like OpenAI's lists: newest first (files:
``order=asc|desc``, ``purpose``), ``limit`` (batches: default 20, at most 100; files: default
10,000), ``after`` (the id the page starts after); the reply has ``data``, ``first_id``,
``last_id`` and ``has_more``. ``list_calls`` counts list requests (Counter: ``batches`` / ``files``);
``add_other_batches(n)`` fills the account with other batches (and their files).

Counters: ``uploads`` (files received), ``batches_created``, ``batch_lines`` (request lines in
created batches), ``batch_custom_ids`` (Counter: times each custom_id was in a created batch),
``batch_prompt_tokens`` / ``batch_completion_tokens`` (usage of the answered lines).
"""
from __future__ import annotations

import json
import time
from collections import Counter
from email.parser import BytesParser
from email.policy import HTTP

OUTCOMES = ("completed", "expired", "failed", "truncated", "unknown_id", "missing", "partial_errors")


class BatchBackend:
    def __init__(self, answer, batch_delay: float = 0.0, batch_outcomes=None, create_faults=None):
        self.answer = answer  # (n, payload) -> chat completion dict
        self.batch_delay, self.batch_outcomes = batch_delay, batch_outcomes
        self.create_faults = list(create_faults or [])
        self.list_calls: Counter = Counter()
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.uploads = 0
        self.batches_created = 0
        self.batch_lines = 0
        self.batch_custom_ids: Counter = Counter()
        self.batch_prompt_tokens = 0
        self.batch_completion_tokens = 0

    # --------------------------------------------------------------------------------- files
    def upload(self, content_type: str, body: bytes) -> tuple[int, dict]:
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        fields, filename, data = {}, "upload.jsonl", b""
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name == "file":
                filename = part.get_filename() or filename
                data = part.get_payload(decode=True) or b""
            else:
                fields[name] = (part.get_payload(decode=True) or b"").decode()
        return 200, self._new_file(data, filename, fields.get("purpose", "batch"), count=True)

    def _new_file(self, data: bytes, filename: str, purpose: str, count: bool = False) -> dict:
        file_id = f"file-{len(self.files) + 1:06d}"
        self.files[file_id] = {"id": file_id, "object": "file", "bytes": len(data),
                               "created_at": int(time.time()), "filename": filename,
                               "purpose": purpose, "status": "processed", "_data": data}
        if count:
            self.uploads += 1
        return self._public(self.files[file_id])

    @staticmethod
    def _public(obj: dict) -> dict:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def list_files(self, query: dict | None = None) -> dict:
        query = query or {}
        self.list_calls["files"] += 1
        files = [f for f in self.files.values() if query.get("purpose") in (None, f["purpose"])]
        if query.get("order", "desc") == "desc":
            files.reverse()
        return self._page(files, query, default=10_000, most=10_000)

    def _page(self, items: list[dict], query: dict, default: int, most: int) -> dict:
        """One page of ``items`` (already in list order) like OpenAI's cursor pages."""
        limit = min(max(int(query.get("limit") or default), 1), most)
        ids = [item["id"] for item in items]
        start = ids.index(query["after"]) + 1 if query.get("after") in ids else 0
        page = [self._public(item) for item in items[start:start + limit]]
        return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": start + limit < len(items)}

    def file_content(self, file_id: str) -> bytes | None:
        f = self.files.get(file_id)
        return None if f is None else f["_data"]

    # ------------------------------------------------------------------------------- batches
    def create(self, payload: dict) -> tuple[int, dict]:
        f = self.files.get(payload.get("input_file_id"))
        if f is None:
            return 400, {"error": {"message": "input_file_id not found", "type": "invalid_request_error"}}
        lines = [json.loads(line) for line in f["_data"].decode().splitlines() if line.strip()]
        number = self.batches_created
        self.batches_created += 1
        self.batch_lines += len(lines)
        ids = [line["custom_id"] for line in lines]
        self.batch_custom_ids.update(ids)
        if callable(self.batch_outcomes):
            outcome = self.batch_outcomes(number, ids)
        elif self.batch_outcomes and number < len(self.batch_outcomes):
            outcome = self.batch_outcomes[number]
        else:
            outcome = "completed"
        assert outcome in OUTCOMES, outcome
        batch_id = f"batch_{number + 1:06d}"
        now = int(time.time())
        self.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": payload.get("endpoint"),
            "input_file_id": f["id"], "completion_window": payload.get("completion_window", "24h"),
            "status": "in_progress", "created_at": now, "in_progress_at": now,
            "metadata": payload.get("metadata"), "output_file_id": None, "error_file_id": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "_lines": lines, "_outcome": outcome, "_due": time.monotonic() + self.batch_delay,
        }
        return 200, self._public(self.batches[batch_id])

    def add_other_batches(self, n: int, files_only: bool = False) -> None:
        """Put ``n`` batches of someone else's (one request each, with their input files) on the
        account, as if created since; ``files_only``: the input files alone."""
        for i in range(n):
            line = {"custom_id": f"other-{len(self.files)}", "method": "POST",
                    "url": "/v1/chat/completions", "body": {"messages": [{"content": "hi"}]}}
            f = self._new_file((json.dumps(line) + "\n").encode(), f"other-{i}.jsonl", "batch")
            if not files_only:
                self.create({"input_file_id": f["id"], "endpoint": line["url"]})

    def create_fault(self, number: int) -> str:
        """What the client hears about the batch created as number ``number`` (0-based)."""
        return self.create_faults[number] if number < len(self.create_faults) else "ok"

    def retrieve(self, batch_id: str) -> tuple[int, dict]:
        b = self.batches.get(batch_id)
        if b is None:
            return 404, {"error": {"message": f"no batch {batch_id}", "type": "invalid_request_error"}}
        if b["status"] == "in_progress" and time.monotonic() >= b["_due"]:
            self._finish(b, b["_outcome"])
        return 200, self._public(b)

    def cancel(self, batch_id: str) -> tuple[int, dict]:
        b = self.batches.get(batch_id)
        if b is None:
            return 404, {"error": {"message": f"no batch {batch_id}", "type": "invalid_request_error"}}
        if b["status"] == "in_progress":
            self._finish(b, "cancelled")
        return 200, self._public(b)

    def list_batches(self, query: dict | None = None) -> dict:
        self.list_calls["batches"] += 1
        return self._page(list(reversed(self.batches.values())), query or {}, default=20, most=100)

    def _finish(self, b: dict, outcome: str) -> None:
        lines = b["_lines"]
        if outcome == "failed":
            b.update(status="failed", failed_at=int(time.time()),
                     errors={"object": "list", "data": [{"code": "invalid_request",
                                                        "message": "validation failed (injected)"}]})
            return
        answered = lines[: len(lines) // 2] if outcome in ("expired", "cancelled") else list(lines)
        if outcome == "missing" and answered:
            answered = answered[:-1]
        out, err = [], []
        for k, line in enumerate(answered):
            cid = line["custom_id"]
            if outcome == "partial_errors" and k % 3 == 2:
                err.append({"id": f"batch_req_{k}", "custom_id": cid, "error": None,
                            "response": {"status_code": 500, "request_id": f"req_{k}",
                                         "body": {"error": {"message": "server error (injected)",
                                                            "type": "server_error"}}}})
                continue
            body = self.answer(k, line["body"])
            self.batch_prompt_tokens += body["usage"]["prompt_tokens"]
            self.batch_completion_tokens += body["usage"]["completion_tokens"]
            out.append({"id": f"batch_req_{k}", "custom_id": cid, "error": None,
                        "response": {"status_code": 200, "request_id": f"req_{k}", "body": body}})
        if outcome == "unknown_id" and out:
            out.append(dict(out[0], custom_id="not-a-request-we-know"))
        data = "".join(json.dumps(o) + "\n" for o in out).encode()
        if outcome == "truncated" and out:
            data = data[: len(data) - len(json.dumps(out[-1])) // 2 - 1]
        status = {"expired": "expired", "cancelled": "cancelled"}.get(outcome, "completed")
        b.update(status=status, completed_at=int(time.time()),
                 request_counts={"total": len(lines), "completed": len(out), "failed": len(err)})
        if out:
            b["output_file_id"] = self._new_file(data, f"{b['id']}_output.jsonl", "batch_output")["id"]
        if err:
            b["error_file_id"] = self._new_file("".join(json.dumps(e) + "\n" for e in err).encode(),
                                                f"{b['id']}_error.jsonl", "batch_output")["id"]
