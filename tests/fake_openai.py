"""A fake OpenAI-compatible chat server for tests and benchmarks (real HTTP on 127.0.0.1).

In a test::

    from fake_openai import FakeOpenAI          # tests/ is on sys.path under pytest

    with FakeOpenAI(latency=0.01) as server:     # random free port, served from a thread
        judge = OpenAIJudge("gpt-4o-mini", base_url=server.url, api_key="sk-test")
        ...
        server.requests                          # requests received (every attempt counts)
        server.outcomes                          # Counter: ok / 429 / 500 / garbled / truncated / hang
        server.max_in_flight                     # highest number of requests handled at once
        server.times                             # arrival time (time.monotonic()) of every request
        server.ok_times                          # time each successful reply was sent
        server.prompts                           # Counter of last user messages answered "ok"

Or use the pytest fixtures ``fake_openai`` / ``fake_openai_factory`` from tests/conftest.py.

Options of :class:`FakeOpenAI` (all keyword):

- ``latency``: seconds each request takes (float);
- ``rpm``: requests per minute enforced with a token bucket (``burst`` requests at most at once,
  default one second's worth); a request over budget gets ``429`` with ``Retry-After`` (seconds,
  fractional), ``retry-after-ms`` and ``x-ratelimit-limit-requests``, like the real API;
- ``fault_rate`` + ``fault_kinds``: that fraction of requests (seeded by ``seed``) fails with one
  of the kinds, drawn uniformly: ``"429"`` (with ``Retry-After: retry_after``), ``"500"``,
  ``"garbled"`` (200 with a body that is not JSON), ``"truncated"`` (200 whose body stops early:
  the connection closes before ``Content-Length`` bytes), ``"hang"`` (sleeps ``hang_s`` before
  answering: longer than a client's timeout), ``"null"`` (200 whose message has ``content: null``,
  ``finish_reason: content_filter``, usage still counted); ``"401"`` (an auth error echoing the key it got);
- ``schedule``: a list of outcomes used for the first requests in arrival order (``"ok"`` or a
  fault kind), or a callable ``(n, prompt) -> outcome`` deciding every request;
- ``retry_after``: the Retry-After value sent with scheduled/random 429s (seconds).
- ``logprobs``: whether the server honours ``logprobs=True, top_logprobs=k`` (default True; False
  acts like a provider without logprobs: the field is absent). At a score digit the alternatives
  are ``score_probs`` (``{"5": 0.6, "4": 0.2, ...}``) or by default 0.6 on the served score and
  0.2 on each neighbour; at an ``(a)``/``(b)`` label ``choice_p`` on the served label, the rest on
  the other; every other token has only itself (logprob 0).
- ``support_n``: whether ``n`` > 1 gives n choices (default True, like vLLM / OpenAI; False like
  llama.cpp, which answers one). Choice j > 0 of an echo reply ends in `` [sample j]``. The prompt
  is counted once in ``usage``; ``server.n_asked`` lists the ``n`` of each chat request.
- Batch API (``/v1/files``, ``/v1/batches``): ``batch_delay``, ``batch_outcomes``; see tests/fake_batch.py.

Replies (deterministic, from a hash of the prompt): a prompt mentioning ``1 to 7`` or ``score``
gets ``"Score: N\\nReasoning: ..."`` (N in 1..7); one mentioning ``Output (a)`` gets
``"Output (a)"`` or ``"Output (b)"``; anything else an echo ``"echo: <first 40 chars>"``.
``usage`` counts ~4 characters per token.

Standalone (for the benchmark; serves until killed; fault-free, asyncio-based so it costs the
benchmarked client little CPU)::

    python tests/fake_openai.py PORT LATENCY [RPM]
"""
from __future__ import annotations

import json
import random
import re
import socket
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from fake_batch import BatchBackend
from fake_replies import _completion_body, completion, reply_for  # noqa: F401 (reply_for: public)

FAULT_KINDS = ("429", "500", "garbled", "truncated", "hang", "null")
#: also accepted in a schedule: "401", an auth error whose message echoes the Authorization header
#: (as a careless proxy might), to check that clients scrub the key from error text
ALL_OUTCOMES = ("ok", "401") + FAULT_KINDS


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


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default listen backlog (5) drops bursts of new connections

    def handle_error(self, request, client_address):  # a client that gave up (timeout): fine
        pass


class FakeOpenAI:
    """The server; see the module docstring for options and counters."""

    def __init__(self, latency: float = 0.0, *, rpm: float | None = None, burst: float | None = None,
                 fault_rate: float = 0.0, fault_kinds: tuple[str, ...] = FAULT_KINDS,
                 schedule: list[str] | Callable[[int, str], str] | None = None,
                 retry_after: float = 0.05, hang_s: float = 3.0, seed: int = 0,
                 host: str = "127.0.0.1", port: int = 0, logprobs: bool = True,
                 score_probs: dict | None = None, choice_p: float = 0.7, support_n: bool = True,
                 batch_delay: float = 0.0, batch_outcomes=None):
        unknown = set(fault_kinds) - set(ALL_OUTCOMES)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {ALL_OUTCOMES}")
        self.latency, self.fault_rate, self.fault_kinds = latency, fault_rate, tuple(fault_kinds)
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
                        "support_n": support_n}
        self.batch = BatchBackend(lambda n, payload: completion(n, payload, self.options),
                                  batch_delay=batch_delay, batch_outcomes=batch_outcomes)
        self._server = _QuietServer((host, port), _handler(self))
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The base_url to give an OpenAI client: ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "FakeOpenAI":
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = 0
            self.outcomes.clear()
            self.prompts.clear()
            self.times.clear()
            self.ok_times.clear()
            self.max_in_flight = self.in_flight

    # -------------------------------------------------------------------------------- logic
    def _decide(self, n: int, prompt: str) -> str:
        if callable(self.schedule):
            return self.schedule(n, prompt)
        if self.schedule is not None and n < len(self.schedule):
            return self.schedule[n]
        if self.fault_rate and self._rng.random() < self.fault_rate:
            return self._rng.choice(self.fault_kinds)
        return "ok"


def _handler(server: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _send(self, status: int, body: bytes, headers: dict | None = None,
                  length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) if length is None else length))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def _error(self, status: int, message: str, kind: str, headers: dict | None = None):
            body = json.dumps({"error": {"message": message, "type": kind, "code": None}}).encode()
            self._send(status, body, headers)

        def _json(self, status: int, obj: dict) -> None:
            self._send(status, json.dumps(obj).encode())

        def do_GET(self):  # noqa: N802
            path = self.path.split("?")[0].rstrip("/").removeprefix("/v1")
            backend = server.batch
            with server._lock:
                if path == "/files":
                    return self._json(200, backend.list_files())
                if path == "/batches":
                    return self._json(200, backend.list_batches())
                m = re.fullmatch(r"/files/([\w-]+)/content", path)
                if m:
                    data = backend.file_content(m.group(1))
                    if data is None:
                        return self._error(404, "no such file", "invalid_request_error")
                    return self._send(200, data, {"Content-Type": "application/octet-stream"})
                m = re.fullmatch(r"/batches/([\w-]+)", path)
                if m:
                    return self._json(*backend.retrieve(m.group(1)))
            self._error(404, f"no route {self.path}", "invalid_request_error")

        def _batch_post(self, path: str, raw: bytes) -> bool:
            backend = server.batch
            with server._lock:
                if path == "/files":
                    self._json(*backend.upload(self.headers.get("Content-Type", ""), raw))
                elif path == "/batches":
                    self._json(*backend.create(json.loads(raw or b"{}")))
                elif re.fullmatch(r"/batches/[\w-]+/cancel", path):
                    self._json(*backend.cancel(path.split("/")[2]))
                else:
                    return False
            return True

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self._batch_post(self.path.split("?")[0].rstrip("/").removeprefix("/v1"), raw):
                return
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._error(404, f"no route {self.path}", "invalid_request_error")
                return
            try:
                payload = json.loads(raw)
                messages = payload["messages"]
                prompt = "\n".join(str(m.get("content", "")) for m in messages)
                last = str(messages[-1].get("content", ""))
            except (ValueError, KeyError, TypeError, IndexError, AttributeError):
                self._error(400, "body must be JSON with a messages list", "invalid_request_error")
                return
            with server._lock:
                n = server.requests
                server.requests += 1
                server.times.append(time.monotonic())
                server.auth_headers.append(self.headers.get("Authorization", ""))
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
                server.n_asked.append(int(payload.get("n") or 1))
            try:
                self._answer(n, payload, prompt, last)
            finally:
                with server._lock:
                    server.in_flight -= 1

        def _answer(self, n: int, payload: dict, prompt: str, last: str) -> None:
            wait = server.bucket.take() if server.bucket else 0.0
            if wait > 0:
                with server._lock:
                    server.outcomes["429"] += 1
                self._error(429, "Rate limit reached for requests", "requests",
                            {"Retry-After": f"{wait:.3f}", "retry-after-ms": str(int(wait * 1000) + 1),
                             "x-ratelimit-limit-requests": f"{server.bucket.rate * 60:g}"})
                return
            outcome = server._decide(n, prompt)
            with server._lock:
                server.outcomes[outcome] += 1
            if outcome == "hang":
                time.sleep(server.hang_s)
            elif server.latency:
                time.sleep(server.latency)
            if outcome == "429":
                ra = server.retry_after
                self._error(429, "Rate limit reached (injected)", "requests",
                            {"Retry-After": f"{ra:.3f}", "retry-after-ms": str(int(ra * 1000))})
                return
            if outcome == "401":
                self._error(401, "Incorrect API key provided: "
                            + self.headers.get("Authorization", "").removeprefix("Bearer "),
                            "invalid_request_error")
                return
            if outcome == "500":
                self._error(500, "The server had an error (injected)", "server_error")
                return
            body = json.dumps(completion(n, payload, server.options)).encode()
            if outcome == "null":
                data = json.loads(body)
                data["choices"][0]["message"]["content"] = None
                data["choices"][0]["finish_reason"] = "content_filter"
                self._send(200, json.dumps(data).encode())
                return
            if outcome == "garbled":
                self._send(200, b'{"id": "chatcmpl-x", "choices": [{"mess' + b"\x00garbage}", None)
                return
            if outcome == "truncated":
                self._send(200, body[: len(body) // 2], length=len(body))
                self.close_connection = True
                return
            with server._lock:
                server.prompts[last] += 1
                server.ok_times.append(time.monotonic())
            self._send(200, body)

    return Handler


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def serve_async(port: int, latency: float, rpm: float | None = None) -> None:
    """The standalone server: the same replies and rate limit, on asyncio instead of threads, so
    that under a benchmark the server costs little CPU (a real API costs the client none)."""
    import asyncio

    bucket = _TokenBucket(rpm, None) if rpm else None
    counter = [0]

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                payload = json.loads(await reader.readexactly(length)) if length else {}
                messages = payload.get("messages") or [{"content": ""}]
                prompt = "\n".join(str(m.get("content", "")) for m in messages)
                wait = bucket.take() if bucket else 0.0
                if wait > 0:
                    status, extra = "429 Too Many Requests", (
                        f"Retry-After: {wait:.3f}\r\nretry-after-ms: {int(wait * 1000) + 1}\r\n"
                        f"x-ratelimit-limit-requests: {rpm:g}\r\n")
                    body = json.dumps({"error": {"message": "Rate limit reached for requests",
                                                 "type": "requests", "code": None}}).encode()
                else:
                    await asyncio.sleep(latency)
                    status, extra = "200 OK", ""
                    body = _completion_body(counter[0], payload.get("model", "fake"), prompt)
                counter[0] += 1
                writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(body)}\r\n{extra}\r\n".encode() + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print(f"fake OpenAI server on http://127.0.0.1:{port}/v1 (latency {latency}s, rpm {rpm})",
          flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    import asyncio

    if len(argv) not in (2, 3):
        print(__doc__.split("Standalone")[1].strip(), file=sys.stderr)
        return 2
    port, latency = int(argv[0]), float(argv[1])
    rpm = float(argv[2]) if len(argv) == 3 else None
    try:
        asyncio.run(serve_async(port, latency, rpm))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
