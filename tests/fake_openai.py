"""A fake OpenAI-compatible server for tests and benchmarks (real HTTP on 127.0.0.1).

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
  ``"empty"`` (200 with ``choices: []`` and usage: billed, no reply; schedule / fault_kinds only);
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
- ``refuse``: ``{"chat" | "files" | "batches": status}``: that route answers the status with an
  error message echoing the Authorization header (to check that no key leaks anywhere);
- ``rate_limit_headers``: False makes the rpm bucket's 429s bare (no Retry-After, no
  x-ratelimit-*), like a provider that says nothing about its limit;
- Batch API (``/v1/files``, ``/v1/batches``, lists paginated like OpenAI's): ``batch_delay``,
  ``batch_outcomes``, ``batch_create_faults``; see tests/fake_batch.py.

Replies (deterministic, from a hash of the prompt): a prompt mentioning ``1 to 7`` or ``score``
gets ``"Score: N\\nReasoning: ..."`` (N in 1..7); one mentioning ``Output (a)`` gets
``"Output (a)"`` or ``"Output (b)"``; anything else an echo ``"echo: <first 40 chars>"``.
``usage`` counts ~4 characters per token.

The routes and replies live in :class:`FakeAPI` (no socket); :class:`FakeOpenAI` serves it from
threads, and the standalone server (for the benchmark and for trying a study by hand) serves the
same :class:`FakeAPI` from asyncio, so that it costs the benchmarked client little CPU. It serves
until killed, with logprobs, ``n`` and the Batch API, fault-free::

    python tests/fake_openai.py PORT LATENCY [RPM] [--batch-delay S] [--no-logprobs]
    OPENAI_BASE_URL=http://127.0.0.1:PORT/v1 ./run_all.sh --study studies/example.yaml [--mode batch]

It prints one line, ``fake OpenAI server on http://127.0.0.1:PORT/v1 ...``, once it listens.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fake_api import ALL_OUTCOMES, FAULT_KINDS, FakeAPI, Reply
from fake_replies import completion, reply_for

__all__ = ["ALL_OUTCOMES", "FAULT_KINDS", "FakeAPI", "FakeOpenAI", "Reply", "completion", "free_port",
           "main", "reply_for", "serve_async"]


# ------------------------------------------------------------------------------ thread server
class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default listen backlog (5) drops bursts of new connections

    def handle_error(self, request, client_address):  # a client that gave up (timeout): fine
        pass


def _head(reply: Reply) -> dict:
    """The reply's headers with Content-Type and Content-Length."""
    headers = {"Content-Type": "application/json", **reply.headers}
    headers["Content-Length"] = str(len(reply.body) if reply.length is None else reply.length)
    return headers


class FakeOpenAI(FakeAPI):
    """:class:`FakeAPI` on a random free port (or ``port``), served from a thread once started;
    see the module docstring for options and counters."""

    def __init__(self, latency: float = 0.0, *, host: str = "127.0.0.1", port: int = 0, **options):
        super().__init__(latency, **options)
        self._server = _QuietServer((host, port), _handler(self))
        self._thread: threading.Thread | None = None

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


def _handler(api: FakeAPI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _serve(self, method: str) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            reply = api.respond(method, self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
            if reply.delay:
                time.sleep(reply.delay)
            if reply.done:
                reply.done()
            self.send_response(reply.status)
            for name, value in _head(reply).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()
            self.close_connection = self.close_connection or reply.close

        def do_GET(self):
            self._serve("GET")

        def do_POST(self):
            self._serve("POST")

    return Handler


@contextlib.contextmanager
def serving_study(out, key: str, **options):
    """A fake server for a whole test module's study: ``SFLIB_OUTPUTS`` / ``SFLIB_FIGURES`` under ``out``,
    ``OPENAI_API_KEY`` = ``key`` and ``OPENAI_BASE_URL`` = the server; yields ``(out, server)`` and puts the
    environment back afterwards."""
    names = ("SFLIB_OUTPUTS", "SFLIB_FIGURES", "OPENAI_API_KEY", "OPENAI_BASE_URL")
    saved = {k: os.environ.get(k) for k in names}
    with FakeOpenAI(**{"latency": 0.0, **options}) as server:
        os.environ.update(SFLIB_OUTPUTS=str(out / "outputs"), SFLIB_FIGURES=str(out / "figures"),
                          OPENAI_API_KEY=key, OPENAI_BASE_URL=server.url)
        try:
            yield out, server
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------- asyncio server
async def serve_async(api: FakeAPI, port: int, host: str = "127.0.0.1") -> None:
    """Serve ``api`` on ``host:port`` until cancelled: HTTP/1.1 keep-alive on asyncio (one thread,
    little CPU under a benchmark), every reply from :meth:`FakeAPI.respond`."""

    async def handle(reader, writer):
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, target, _ = head[0].split(" ", 2)
                headers = {}
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                raw = await reader.readexactly(length) if length else b""
                reply = api.respond(method, target, headers, raw)
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                if reply.done:
                    reply.done()
                lines = [f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}"]
                lines += [f"{name}: {value}" for name, value in _head(reply).items()]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + reply.body)
                await writer.drain()
                if reply.close or headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port, backlog=1024)
    print(f"fake OpenAI server on http://{host}:{port}/v1 (latency {api.latency}s, "
          f"rpm {api.bucket.rate * 60 if api.bucket else None}, logprobs {api.options['logprobs']}, "
          f"batch delay {api.batch.batch_delay}s)", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python tests/fake_openai.py",
                                     description="A fake OpenAI-compatible server (chat "
                                     "completions with logprobs and n, files, batches).")
    parser.add_argument("port", type=int)
    parser.add_argument("latency", type=float, help="seconds each chat request takes")
    parser.add_argument("rpm", type=float, nargs="?", default=None,
                        help="requests per minute (429 with Retry-After beyond it)")
    parser.add_argument("--batch-delay", type=float, default=0.0,
                        help="seconds from a batch's creation until it is finished")
    parser.add_argument("--no-logprobs", action="store_true",
                        help="act like a provider without logprobs")
    parser.add_argument("--bare-429", action="store_true",
                        help="429s without Retry-After / x-ratelimit-* headers")
    args = parser.parse_args(argv)
    api = FakeAPI(args.latency, rpm=args.rpm, logprobs=not args.no_logprobs,
                  batch_delay=args.batch_delay, rate_limit_headers=not args.bare_429)
    try:
        asyncio.run(serve_async(api, args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
