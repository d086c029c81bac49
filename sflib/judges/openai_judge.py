"""A judge behind any OpenAI-compatible chat endpoint (OpenAI, Azure's v1 API, vLLM, Ollama, llama.cpp).

``OpenAIJudge("gpt-4o-mini")`` talks to api.openai.com with ``OPENAI_API_KEY``;
``OpenAIJudge("my-model", base_url="http://localhost:8000/v1")`` (or ``OPENAI_BASE_URL``) talks to a
local server, where any key will do.

How it stays fast and loses nothing:

- ``concurrency`` requests in flight at once (a pool of asyncio workers on one ``AsyncOpenAI``
  client, which runs in a worker thread so :meth:`complete` works inside Jupyter too);
- optional ``rpm`` / ``tpm`` budgets (``aiolimiter`` leaky buckets; tokens estimated as prompt
  characters / 4 + ``max_tokens``, as OpenAI counts them), so a run stays under its tier; the
  ``rpm`` budget is spent by every HTTP attempt, the client's own retries included;
- after a 429 with ``Retry-After`` every worker holds off until then (the client alone would
  only delay the one request that got the 429); and when no ``rpm`` was given, the first 429
  that announces ``x-ratelimit-limit-requests`` (as OpenAI's do) sets the ``rpm`` budget to it
  (``auto_rpm=False`` turns that off);
- a polite client on 429 (:mod:`sflib.judges.throttle`): the number of attempts in flight is an
  AIMD window (halved by a 429, once per round trip; grown slowly by successes, up to
  ``concurrency``), and a rejected request waits its ``Retry-After`` or, when the server sends
  none, an exponential backoff with full jitter, for up to ``rate_limit_patience`` seconds (a
  quota that is exhausted, ``insufficient_quota``, is not retried);
- the openai client's own retries (``max_retries``, exponential backoff) for 408/409/5xx,
  connection errors and timeouts (``timeout`` seconds per attempt); a reply whose body is not
  valid JSON, or that has no text (``content: null``, ``choices: []``), is asked again up to
  ``max_retries`` times (the tokens of every attempt that was answered are counted);
- ``claim=callback(index)``: asked before a request is sent; False skips it (another run on the
  same store asks it, :mod:`sflib.feedback.claims`);
- ``logprobs=True, top_logprobs=20`` (passed as extra params) return each generated token's
  alternatives in :attr:`Completion.logprobs` (read by :mod:`sflib.feedback.logprobs`);
- a request with ``Request.params={"n": k}`` asks for k samples at once (the prompt is sent and
  paid once); every choice's text is in :attr:`Completion.texts`;
- a server that is not there: when a request's connection is refused after the client's retries and
  no request of the run has had any reply, the requests still retrying stop ("stopped retrying: ...")
  and those not yet sent fail at once ("not sent: ...") instead of each retrying for ~20 s (a stopped
  ``vllm serve`` made notebook 01 wait 3.5 minutes, ``rate`` at concurrency 16 86 s);
  a call that starts within :data:`REFUSED_MEMORY_S` seconds of such a verdict sends nothing (the second
  pass of one command, e.g. ``generate``'s per-sample pass after its ``n`` pass, does not wait again);
- whatever still fails comes back as ``Completion(error=...)`` — the engine stores it as a
  visible failure and the next run retries it.

The API key is read from the argument or ``OPENAI_API_KEY`` when requests start, kept only inside
the client, never put into a ``Completion``, a log line or ``repr``, and scrubbed from error text
(:func:`sflib.judges.base.scrub`); a refusal says why in one line (bad key, model not found,
quota: :func:`sflib.judges.base.provider_error`).
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import queue
import random
import threading
import time
from typing import Any, Iterable, Iterator

from .base import Completion, Judge, Request, provider_error, scrub
from .replies import _retry_after, token_logprobs  # token_logprobs: importable here too
from .throttle import HOLD_S, AIMDWindow, backoff

log = logging.getLogger(__name__)

OPENAI_URL = "https://api.openai.com/v1"
#: per-task counter of HTTP attempts (set by ``_one``, incremented by the request hook)
_ATTEMPTS: contextvars.ContextVar[list[int]] = contextvars.ContextVar("sflib_openai_attempts")
#: the running request's slot in the AIMD window: ``[ticket or None]`` (see :mod:`.throttle`)
_SLOT: contextvars.ContextVar[list] = contextvars.ContextVar("sflib_openai_slot")
#: the running request's ``on_start`` callback, fired once by the HTTP hook when its first attempt is sent
_ON_SEND: contextvars.ContextVar = contextvars.ContextVar("sflib_openai_on_send")

#: key sent to custom endpoints that need none (vLLM, llama.cpp, Ollama accept anything)
DUMMY_KEY = "sk-no-key-required"
#: seconds a judge remembers that its server refused every connection (see the module notes)
REFUSED_MEMORY_S = 10.0


class ConfigurationError(ValueError):
    """The judge cannot start (no API key for api.openai.com, bad option)."""


class OpenAIJudge(Judge):
    """Chat-completions judge; see the module docstring. ``extra_params`` (e.g. ``top_p``, ``seed``)
    go to every request and, with ``temperature`` and ``max_tokens``, into the cache key."""

    #: the tokens-per-minute budget is a bucket holding ``tpm * tpm_window / 60`` tokens
    tpm_window: float = 60.0
    reports_starts = True
    supports_claims = True
    supports_n = True

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 concurrency: int = 16, rpm: float | None = None, tpm: float | None = None,
                 timeout: float = 60, max_retries: int = 6, temperature: float = 0.0,
                 max_tokens: int = 512, rate_limit_patience: float = 300.0, auto_rpm: bool = True,
                 **extra_params: Any):
        if not model:
            raise ConfigurationError("OpenAIJudge needs a model name, e.g. 'gpt-4o-mini'")
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be >= 1, got {concurrency}")
        for label, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and value <= 0:
                raise ConfigurationError(f"{label} must be > 0 or None, got {value}")
        self.model = model
        self.name = f"openai:{model}"
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "").rstrip("/") or None
        self.__api_key = api_key  # name-mangled; never in repr, params or completions
        self.concurrency = int(concurrency)
        self.rpm, self.tpm = rpm, tpm
        self.timeout, self.max_retries = float(timeout), int(max_retries)
        self.rate_limit_patience = float(rate_limit_patience)
        self.auto_rpm = bool(auto_rpm)
        self.params = {"temperature": temperature, "max_tokens": max_tokens, **extra_params}
        self._refused: tuple[str, float] = ("", -1e9)  # the last "server not there" reason and when

    def __repr__(self) -> str:
        return (f"OpenAIJudge({self.model!r}, base_url={self.base_url or OPENAI_URL!r}, "
                f"concurrency={self.concurrency}, rpm={self.rpm}, tpm={self.tpm})")

    # ------------------------------------------------------------------------------ config
    def _official(self) -> bool:
        return self.base_url is None or "api.openai.com" in self.base_url

    def _key(self) -> str:
        key = self.__api_key or os.environ.get("OPENAI_API_KEY")
        if key:
            return key
        if self._official():
            raise ConfigurationError(
                f"judge {self.name}: no API key. Set the OPENAI_API_KEY environment variable "
                "(e.g. `export OPENAI_API_KEY=...` before starting Jupyter), or pass base_url= / "
                "set OPENAI_BASE_URL to use a local OpenAI-compatible server instead.")
        return DUMMY_KEY

    def check(self) -> None:
        """Raise :class:`ConfigurationError` now if requests could not start."""
        self._key()

    # ------------------------------------------------------------------------------ public
    def complete(self, requests: Iterable[Request], on_start=None,
                 claim=None) -> Iterator[tuple[int, Completion | None]]:
        """Yield ``(index, Completion)`` as answers arrive (any order, each index once).

        ``on_start(index)``, when given, is called (in a worker thread) just before a request's
        first HTTP attempt: the engine records it as in flight. ``claim(index)``, when given, is
        called (in a thread) before a request is started; when it returns False the request is
        not sent and ``(index, None)`` is yielded."""
        requests = list(requests)
        key = self._key()  # configuration error before any request
        if not requests:
            return
        out: queue.Queue = queue.Queue()
        state: dict[str, Any] = {"stop": False}
        if time.monotonic() - self._refused[1] < REFUSED_MEMORY_S:  # refused a moment ago (a second pass)
            state["refused"], state["unreachable"] = self._refused[0], f"not sent: {self._refused[0]}"

        def emit(item):
            if not state["stop"]:
                out.put(("item", item))

        def runner():
            try:
                loop = asyncio.new_event_loop()
                state["loop"] = loop
                task = loop.create_task(self._run(requests, key, emit, state, on_start, claim))
                state["task"] = task
                loop.run_until_complete(task)
            except asyncio.CancelledError:
                pass
            except BaseException as e:  # surfaced in the consumer's thread
                out.put(("error", e))
            finally:
                try:
                    loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.close()
                except Exception:  # pragma: no cover - best effort
                    pass
                out.put(("done", None))

        thread = threading.Thread(target=runner, name=f"{self.name}-requests", daemon=True)
        thread.start()
        try:
            while True:
                try:
                    kind, payload = out.get(timeout=0.5)
                except queue.Empty:
                    continue
                if kind == "done":
                    break
                if kind == "error":
                    raise payload
                yield payload
                # the consumer asked for more, so it has stored this one: a worker may start
                # another request (in flight + handed over but unstored <= concurrency)
                try:
                    state["loop"].call_soon_threadsafe(state["credits"].release)
                except RuntimeError:  # the loop has finished: nothing left to start
                    pass
        finally:
            state["stop"] = True
            loop, task = state.get("loop"), state.get("task")
            if thread.is_alive() and loop is not None and task is not None:
                try:
                    loop.call_soon_threadsafe(task.cancel)
                except RuntimeError:  # loop already closed
                    pass
            thread.join(timeout=10)

    # ------------------------------------------------------------------------------- async
    async def _run(self, requests: list[Request], key: str, emit, state: dict, on_start=None,
                   claim=None) -> None:
        from aiolimiter import AsyncLimiter
        import openai

        loop = asyncio.get_running_loop()

        def rpm_bucket(rpm: float) -> AsyncLimiter:
            period = max(1.0, 60.0 / rpm)  # burst: about one second's worth of requests
            return AsyncLimiter(rpm * period / 60.0, period)

        rpm_limiter = [rpm_bucket(self.rpm) if self.rpm else None]
        tpm_capacity = (self.tpm or 0) * self.tpm_window / 60.0
        tpm_limiter = AsyncLimiter(tpm_capacity, self.tpm_window) if self.tpm else None
        paused_until = [0.0]  # set by a 429's Retry-After: every worker holds off until then
        window = state["window"] = AIMDWindow(self.concurrency)  # attempts in flight (429: fewer)

        # HTTP hooks run for every attempt, the client's own retries included: they count
        # attempts, apply the shared 429 pause and spend the requests-per-minute budget
        async def on_request(_request) -> None:
            counter = _ATTEMPTS.get(None)
            if counter is not None:
                counter[0] += 1
            slot = _SLOT.get(None)
            if slot is not None:
                if slot[0] is not None:  # the previous attempt got no reply (timeout, reset)
                    window.release(slot[0], None)
                    slot[0] = None
                slot[0] = await window.acquire()
            wait = paused_until[0] - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if rpm_limiter[0] is not None:
                await rpm_limiter[0].acquire()
            mark = _ON_SEND.get(None)
            if mark is not None:  # past every wait: the request is really being sent now
                mark()

        async def on_response(response) -> None:
            state["reached"] = True  # a reply, whatever it says: the server is there
            slot = _SLOT.get(None)
            if slot is not None and slot[0] is not None:
                if response.status_code == 429:  # kept through the backoff (released by _one)
                    window.release(slot[0], 429, keep=True)
                else:
                    window.release(slot[0], response.status_code)
                    slot[0] = None
            if response.status_code != 429:
                return
            # 429s are retried by _one (AIMD window + backoff), not by the client's fixed schedule
            response.headers["x-should-retry"] = "false"
            wait = _retry_after(response.headers)
            if wait:
                paused_until[0] = max(paused_until[0], loop.time() + wait)
            if rpm_limiter[0] is None and self.auto_rpm:
                # no budget given and the server is refusing: pace at the limit it announces
                try:
                    limit = float(response.headers.get("x-ratelimit-limit-requests") or 0)
                except ValueError:
                    limit = 0.0
                if limit > 0:
                    rpm_limiter[0] = rpm_bucket(limit)
                    log.info("%s: rate limited; pacing at the server's %g requests/minute",
                             self.name, limit)

        http_client = openai.DefaultAsyncHttpxClient(
            event_hooks={"request": [on_request], "response": [on_response]})
        client = openai.AsyncOpenAI(api_key=key, base_url=self.base_url or OPENAI_URL,
                                    timeout=self.timeout, max_retries=self.max_retries,
                                    http_client=http_client)
        pending = iter(range(len(requests)))
        credits = state["credits"] = asyncio.Semaphore(self.concurrency)
        asking: set[asyncio.Future] = set()  # the requests being asked now (the breaker stops them)

        async def worker():
            while True:
                await credits.acquire()  # released by the consumer, see complete()
                index = next(pending, None)  # shared iterator: each index taken by one worker
                if index is None or state["stop"]:
                    return
                if state.get("unreachable"):  # the server refused and never answered: do not send
                    emit((index, Completion(error=state["unreachable"], attempts=0)))
                    continue
                if claim is not None and not await asyncio.to_thread(claim, index):
                    emit((index, None))  # another run asks it: not sent
                    continue
                if on_start is not None:  # fired by on_request, after the rate limiters' waits
                    _ON_SEND.set(_once(on_start, index))
                slot = [None, window]  # this request's slot in the window, taken per HTTP attempt
                _SLOT.set(slot)
                one = asyncio.ensure_future(self._one(client, requests[index], tpm_limiter, tpm_capacity, key))
                asking.add(one)
                try:
                    completion = await one
                except asyncio.CancelledError:  # stopped by the breaker below, unless this worker is cancelled
                    if asyncio.current_task().cancelling() or not state.get("unreachable"):
                        raise
                    completion = Completion(error=f"stopped retrying: {state['refused']}", attempts=1)
                finally:
                    asking.discard(one)
                    if slot[0] is not None:  # cancelled, or the last attempt got no reply
                        window.release(slot[0], None)
                if (completion.error or "").startswith("APIConnectionError") and not state.get("reached") \
                        and not state.get("unreachable"):
                    # the server is not there: the requests retrying the same refusal stop, the rest are not sent
                    state["refused"] = scrub(f"{self.base_url or OPENAI_URL} refused connections (server down?); "
                                             "start it or fix base_url, then run again", key)[:400]
                    state["unreachable"] = f"not sent: {state['refused']}"
                    self._refused = (state["refused"], time.monotonic())
                    for other in list(asking):
                        other.cancel()
                emit((index, completion))

        try:
            n_workers = min(self.concurrency, len(requests))
            await asyncio.gather(*(worker() for _ in range(n_workers)))
        finally:
            await client.close()

    def _estimate_tokens(self, request: Request) -> int:
        chars = sum(len(str(m.get("content", ""))) for m in request.messages)
        return chars // 4 + int(self.params.get("max_tokens") or 0) + 4 * len(request.messages)

    async def _one(self, client, request: Request, tpm_limiter, tpm_capacity: float,
                   key: str) -> Completion:
        import openai

        start = time.perf_counter()
        counter = [0]  # HTTP attempts, counted by the on_request hook (this task only)
        _ATTEMPTS.set(counter)
        bad_bodies = 0
        no_text = 0
        rejected = 0  # 429s of this request
        spent = [0, 0]  # tokens of answered attempts whose reply had no text (still billed)
        params = {**self.params, **(request.params or {})}

        def failed(message: str) -> Completion:
            return Completion(error=scrub(message, key)[:500], attempts=counter[0],
                              latency_s=time.perf_counter() - start, prompt_tokens=spent[0],
                              completion_tokens=spent[1])

        while True:
            if tpm_limiter is not None:
                await tpm_limiter.acquire(min(self._estimate_tokens(request), tpm_capacity))
            try:
                response = await client.chat.completions.create(
                    model=self.model, messages=request.messages, **params)
                usage = getattr(response, "usage", None)
                choices = list(getattr(response, "choices", None) or [])
            except openai.RateLimitError as e:  # 429: back off (the window shrank already)
                if getattr(e, "code", None) == "insufficient_quota":
                    return failed(provider_error(e, key))
                if time.perf_counter() - start > self.rate_limit_patience:
                    return failed(f"rate limited (429) for longer than {self.rate_limit_patience:.0f}"
                                  f" s: {e.message}")
                rejected += 1
                wait = _retry_after(getattr(e.response, "headers", None))
                wait = backoff(rejected) if wait is None else wait * (1 + 0.25 * random.random())
                # the rejected attempt's window slot is kept for the first part of the wait
                hold = min(wait, HOLD_S)
                await asyncio.sleep(hold)
                slot = _SLOT.get(None)
                if slot is not None and slot[0] is not None:
                    slot[1].release(slot[0], None)
                    slot[0] = None
                await asyncio.sleep(wait - hold)
                continue
            except openai.APIStatusError as e:  # 4xx, or 5xx after the client's retries
                return failed(provider_error(e, key))
            except openai.APIConnectionError as e:  # includes APITimeoutError, after the retries
                return failed(f"{type(e).__name__}: {e}")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a body that is not valid JSON / not a chat completion
                bad_bodies += 1
                if bad_bodies > self.max_retries:
                    return failed(f"malformed reply ({type(e).__name__}: {e})")
                await asyncio.sleep(min(8.0, 0.25 * 2 ** bad_bodies) * random.random())
                continue
            # every reply that carries usage is counted (also one without choices or text)
            spent[0] += int(getattr(usage, "prompt_tokens", 0) or 0)
            spent[1] += int(getattr(usage, "completion_tokens", 0) or 0)
            choice = choices[0] if choices else None
            text = choice.message.content if choice is not None and choice.message else None
            if text is None:  # content: null or choices: [] (a filter, a tool call, a hiccup)
                no_text += 1
                if no_text > self.max_retries:
                    reason = "no choices" if choice is None else f"finish_reason={choice.finish_reason}"
                    return failed(f"reply has no text ({reason}) {no_text} times")
                await asyncio.sleep(min(8.0, 0.25 * 2 ** no_text) * random.random())
                continue
            texts = [c.message.content or "" for c in sorted(choices, key=lambda c: c.index or 0)]
            return Completion(text=text, prompt_tokens=spent[0], completion_tokens=spent[1],
                              latency_s=time.perf_counter() - start, attempts=counter[0],
                              logprobs=token_logprobs(choice),
                              texts=texts if params.get("n", 1) != 1 else None)


def _once(callback, index: int):
    """``callback(index)`` the first time the returned function is called, never again."""
    done = [False]

    def fire() -> None:
        if not done[0]:
            done[0] = True
            callback(index)

    return fire
