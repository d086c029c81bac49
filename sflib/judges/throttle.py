"""A polite client: how many HTTP attempts an API judge keeps in flight while a server says 429.

:class:`AIMDWindow` is additive increase, multiplicative decrease on the number of attempts in
flight (as TCP does with its congestion window): it ends up at the judge's ``concurrency`` while nothing is refused; an
attempt answered 429 halves it, once per round trip (only an attempt sent after the last cut can
cut again, so one burst of 429s counts once), down to 1; every successful attempt adds
``increase / window`` (about ``increase`` per window of successes), up to ``concurrency``. Before
the first 429 it starts at a quarter of ``concurrency`` and doubles every round trip (slow start). A
rejected request waits :func:`backoff` (exponential, full jitter) before it asks for a slot again,
unless the server said how long to wait (``Retry-After``).

So a server that answers 429 without rate-limit headers (no ``Retry-After``, no
``x-ratelimit-limit-requests``) sees the client settle just above its limit instead of being
hammered by every worker at once.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections import deque

#: the window gains ``INCREASE / window`` per successful attempt (slow: a rate limit is usually
#: a hard wall, and each probe past it costs a rejected request)
INCREASE = 0.1
#: the window is multiplied by this on a 429 (once per round trip)
DECREASE = 0.5
#: backoff of a rejected request: uniform in [0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**(n-1))]
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
#: the window starts at ``max(START, concurrency // START_DIVISOR)`` and, until the first 429,
#: grows by one per success (slow start: it doubles every round trip), so the first burst against
#: an unknown limit is a quarter of the workers, not all of them
START = 4
START_DIVISOR = 4
#: a rejected request keeps its window slot for the first HOLD_S seconds of its backoff
HOLD_S = 0.5
#: seconds of accepted attempts the window remembers to estimate what the server takes
MEMORY_S = 2.0


def backoff(n: int, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    """Seconds to wait before the ``n``-th retry (n >= 1): exponential with full jitter."""
    return random.uniform(0.0, min(cap, base * 2 ** max(0, n - 1)))


class AIMDWindow:
    """Attempts in flight at most ``size`` (a fractional size admits its last attempt with that
    probability, so the window is not stuck between two whole numbers); see the module docstring.

    A cut is ``size * decrease``, and never above what the server was seen to take: the accepted
    attempts of the last :data:`MEMORY_S` seconds times their mean latency (Little's law), so the
    first burst of 429s (every worker at once against a small limit) settles the window in one
    round trip instead of halving it round after round. Counts ``accepted`` and ``rejected``
    (429) attempts. Use from one event loop."""

    def __init__(self, limit: int, increase: float = INCREASE, decrease: float = DECREASE):
        self.limit = max(1, int(limit))
        self.size = float(min(self.limit, max(START, self.limit // START_DIVISOR)))
        self.slow_start = True  # until the first 429
        self.increase, self.decrease = increase, decrease
        self.in_flight = 0
        self.accepted = self.rejected = 0
        self.cuts = 0
        self._sent = 0  # attempts sent so far; an attempt's number tells if it predates the last cut
        self._cut_at = -1
        self._waiters: list[asyncio.Future] = []
        self._started: dict[int, float] = {}  # ticket -> send time
        self._recent: deque[tuple[float, float]] = deque()  # (time, latency) of accepted attempts
        self._t0: float | None = None

    def _admits(self) -> bool:
        whole = int(self.size)
        if self.in_flight < max(1, whole):
            return True
        return self.in_flight == whole and random.random() < self.size - whole

    async def acquire(self) -> int:
        """Wait for a slot; returns the attempt's number (give it back to :meth:`release`)."""
        while not self._admits():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.in_flight += 1
        self._sent += 1
        now = time.monotonic()
        self._t0 = now if self._t0 is None else self._t0
        self._started[self._sent] = now
        return self._sent

    def _taken(self, now: float) -> float:
        """Attempts the server took at once lately: accepted rate x mean latency (Little's law)."""
        while self._recent and self._recent[0][0] < now - MEMORY_S:
            self._recent.popleft()
        if not self._recent:
            return 1.0
        span = max(now - max(self._t0 or now, now - MEMORY_S), 1.0)
        latency = sum(lat for _, lat in self._recent) / len(self._recent)
        return len(self._recent) / span * latency

    def release(self, ticket: int, status: int | None, keep: bool = False) -> None:
        """Give the slot back: ``status`` of the reply (None: no reply, e.g. a timeout, or a slot
        kept through a backoff). ``keep=True`` (a 429): count it but keep the slot taken; the
        request gives it back with ``release(ticket, None)`` when its backoff is over, so that a
        window of 1 really is one attempt at a time, waits included."""
        now = time.monotonic()
        sent = self._started.pop(ticket, now)
        if not keep:
            self.in_flight -= 1
        if status == 429:
            self.rejected += 1
            if ticket > self._cut_at:  # sent after the last cut: a new sign of overload
                self.size = max(1.0, min(self.size * self.decrease, self._taken(now)))
                self._cut_at = self._sent
                self.cuts += 1
                self.slow_start = False
        elif status is not None and status < 400:
            self.accepted += 1
            self._recent.append((now, now - sent))
            step = 1.0 if self.slow_start else self.increase / self.size
            self.size = min(float(self.limit), self.size + step)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:  # each re-checks the window
            if not waiter.done():
                waiter.set_result(None)
