"""The fake OpenAI server's API without a socket (tests/fake_openai.py serves it): the options,
the counters and :meth:`FakeAPI.respond`, which turns one HTTP request into a :class:`Reply`
(chat completions here, ``/v1/files`` and ``/v1/batches`` through tests/fake_batch.py, replies
from tests/fake_replies.py). Options and counters are described in tests/fake_openai.py."""
from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import parse_qsl, urlsplit

from fake_batch import BatchBackend
import fake_structured
from fake_replies import completion

FAULT_KINDS = ("429", "500", "garbled", "truncated", "hang", "null")
#: also accepted in a schedule: "401", an auth error whose message echoes the Authorization header
#: (as a careless proxy might), to check that clients scrub the key from error text
#: and "empty": 200 with ``choices: []`` and usage (billed, no reply), as some proxies answer
ALL_OUTCOMES = ("ok", "401", "empty") + FAULT_KINDS


class _TokenBucket:
    def __init__(self, rpm: float, burst: float | None):
        self.rate = rpm / 60.0
        self.capacity = burst if burst is not None else max(1.0, self.rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> float:
        """0 when a request may go now, else the seconds until one may."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0.0
            return (1.0 - self.tokens) / self.rate


@dataclass
class Reply:
    """What a transport sends: wait ``delay`` seconds, call ``done`` (bookkeeping), then write
    ``body`` announcing ``length`` bytes (``None``: ``len(body)``); ``close``: drop the connection."""
    status: int
    body: bytes
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    length: int | None = None
    close: bool = False
    done: Callable[[], None] | None = None


def _json_reply(status: int, obj: dict, headers: dict | None = None) -> Reply:
    return Reply(status, json.dumps(obj).encode(), headers or {})


def _error(status: int, message: str, kind: str, headers: dict | None = None) -> Reply:
    return _json_reply(status, {"error": {"message": message, "type": kind, "code": None}}, headers)


class FakeAPI:
    """The fake API without a socket: options, counters and :meth:`respond`. :class:`FakeOpenAI`
    serves it from threads (tests), :func:`serve_async` from asyncio (standalone)."""

    def __init__(self, latency: float = 0.0, *, rpm: float | None = None, burst: float | None = None,
                 fault_rate: float = 0.0, fault_kinds: tuple[str, ...] = FAULT_KINDS,
                 schedule: list[str] | Callable[[int, str], str] | None = None,
                 retry_after: float = 0.05, hang_s: float = 3.0, seed: int = 0,
                 logprobs: bool = True, score_probs: dict | None = None, choice_p: float = 0.7,
                 support_n: bool = True, structured: bool = True, batch_delay: float = 0.0, batch_outcomes=None,
                 batch_create_faults=None, refuse: dict | None = None,
                 rate_limit_headers: bool = True):
        unknown = set(fault_kinds) - set(ALL_OUTCOMES)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {ALL_OUTCOMES}")
        self.latency, self.fault_rate, self.fault_kinds = latency, fault_rate, tuple(fault_kinds)
        #: ``{"chat" | "files" | "batches": status}``: that route answers the status (401, 400,
        #: 403, 404 ...) with a message that echoes the Authorization header it got, as a careless
        #: proxy might: a client must scrub it from every error text
        self.refuse = dict(refuse or {})
        #: False: a 429 from the rpm bucket carries no Retry-After / x-ratelimit-* headers
        self.rate_limit_headers = rate_limit_headers
        self.schedule, self.retry_after, self.hang_s = schedule, retry_after, hang_s
        self.bucket = _TokenBucket(rpm, burst) if rpm else None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.requests = 0
        self.outcomes: Counter = Counter()
        self.prompts: Counter = Counter()
        self.times: list[float] = []
        self.ok_times: list[float] = []
        self.auth_headers: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.n_asked: list[int] = []
        self.options = {"logprobs": logprobs, "score_probs": score_probs, "choice_p": choice_p,
                        "support_n": support_n,
                        "structured": structured}  # False: refuse response_format (tests/fake_structured.py)
        self.batch = BatchBackend(lambda n, payload: completion(n, payload, self.options),
                                  batch_delay=batch_delay, batch_outcomes=batch_outcomes,
                                  create_faults=batch_create_faults)

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = 0
            self.outcomes.clear()
            self.prompts.clear()
            self.times.clear()
            self.ok_times.clear()
            self.max_in_flight = self.in_flight

    def _decide(self, n: int, prompt: str) -> str:
        if callable(self.schedule):
            return self.schedule(n, prompt)
        if self.schedule is not None and n < len(self.schedule):
            return self.schedule[n]
        if self.fault_rate and self._rng.random() < self.fault_rate:
            return self._rng.choice(self.fault_kinds)
        return "ok"

    # ------------------------------------------------------------------------------- routes
    def respond(self, method: str, target: str, headers: dict, raw: bytes) -> Reply:
        """The reply to one HTTP request (``headers``: lower-case names)."""
        url = urlsplit(target)
        path = url.path.rstrip("/").removeprefix("/v1")
        query = dict(parse_qsl(url.query))
        route = path.strip("/").split("/")[0]
        if route in self.refuse:
            status = self.refuse[route]
            echo = headers.get("authorization", "").removeprefix("Bearer ")
            with self._lock:
                self.auth_headers.append(headers.get("authorization", ""))
            kind = "invalid_request_error"
            return _error(status, f"Refused (injected {status}). Incorrect API key provided: {echo}. "
                          f"Authorization: Bearer {echo}", kind)
        if method == "POST" and path == "/chat/completions":
            return self._chat(headers, raw)
        with self._lock:
            reply = self._batch_route(method, path, query, headers, raw)
        return reply or _error(404, f"no route {method} {target}", "invalid_request_error")

    def _batch_route(self, method: str, path: str, query: dict, headers: dict,
                     raw: bytes) -> Reply | None:
        backend = self.batch
        if method == "GET":
            if path == "/files":
                return _json_reply(200, backend.list_files(query))
            if path == "/batches":
                return _json_reply(200, backend.list_batches(query))
            m = re.fullmatch(r"/files/([\w-]+)/content", path)
            if m:
                data = backend.file_content(m.group(1))
                if data is None:
                    return _error(404, "no such file", "invalid_request_error")
                return Reply(200, data, {"Content-Type": "application/octet-stream"})
            m = re.fullmatch(r"/batches/([\w-]+)", path)
            if m:
                return _json_reply(*backend.retrieve(m.group(1)))
        elif method == "POST":
            if path == "/files":
                return _json_reply(*backend.upload(headers.get("content-type", ""), raw))
            if path == "/batches":
                status, obj = backend.create(json.loads(raw or b"{}"))
                fault = backend.create_fault(backend.batches_created - 1) if status == 200 else "ok"
                if fault == "500":  # created, but the client hears otherwise
                    return _error(500, "The server had an error (injected, after creating the "
                                  "batch)", "server_error")
                return Reply(status, json.dumps(obj).encode(),
                             delay=self.hang_s if fault == "hang" else 0.0)
            m = re.fullmatch(r"/batches/([\w-]+)/cancel", path)
            if m:
                return _json_reply(*backend.cancel(m.group(1)))
        return None

    def _chat(self, headers: dict, raw: bytes) -> Reply:
        try:
            payload = json.loads(raw)
            messages = payload["messages"]
            prompt = "\n".join(str(m.get("content", "")) for m in messages)
            last = str(messages[-1].get("content", ""))
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return _error(400, "body must be JSON with a messages list", "invalid_request_error")
        auth = headers.get("authorization", "")
        refusal = fake_structured.check(payload, self.options)  # the schema sent is validated first
        if refusal is not None:
            with self._lock:
                self.requests += 1
                self.outcomes["refused"] += 1
            return _error(refusal[0], refusal[1], "invalid_request_error")
        with self._lock:
            n = self.requests
            self.requests += 1
            self.times.append(time.monotonic())
            self.auth_headers.append(auth)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.n_asked.append(int(payload.get("n") or 1))
        reply, ok = self._answer(n, payload, prompt, auth)

        def done() -> None:
            with self._lock:
                self.in_flight -= 1
                if ok:
                    self.prompts[last] += 1
                    self.ok_times.append(time.monotonic())

        reply.done = done
        return reply

    def _answer(self, n: int, payload: dict, prompt: str, auth: str) -> tuple[Reply, bool]:
        """The chat reply, and whether it is a successful answer."""
        wait = self.bucket.take() if self.bucket else 0.0
        if wait > 0:
            with self._lock:
                self.outcomes["429"] += 1
            headers = {"Retry-After": f"{wait:.3f}", "retry-after-ms": str(int(wait * 1000) + 1),
                       "x-ratelimit-limit-requests": f"{self.bucket.rate * 60:g}"}
            return _error(429, "Rate limit reached for requests", "requests",
                          headers if self.rate_limit_headers else {}), False
        outcome = self._decide(n, prompt)
        with self._lock:
            self.outcomes[outcome] += 1
        delay = self.hang_s if outcome == "hang" else self.latency
        if outcome == "429":
            ra = self.retry_after
            reply = _error(429, "Rate limit reached (injected)", "requests",
                           {"Retry-After": f"{ra:.3f}", "retry-after-ms": str(int(ra * 1000))})
        elif outcome == "401":
            reply = _error(401, "Incorrect API key provided: " + auth.removeprefix("Bearer "),
                           "invalid_request_error")
        elif outcome == "500":
            reply = _error(500, "The server had an error (injected)", "server_error")
        elif outcome == "garbled":
            reply = Reply(200, b'{"id": "chatcmpl-x", "choices": [{"mess' + b"\x00garbage}")
        else:
            data = completion(n, payload, self.options)
            if outcome == "empty":
                data["choices"] = []
            if outcome == "null":
                data["choices"][0]["message"]["content"] = None
                data["choices"][0]["finish_reason"] = "content_filter"
            body = json.dumps(data).encode()
            if outcome == "truncated":
                reply = Reply(200, body[: len(body) // 2], length=len(body), close=True)
            else:
                reply = Reply(200, body)
        reply.delay = delay
        return reply, outcome in ("ok", "hang")
