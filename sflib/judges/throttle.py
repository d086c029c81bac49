"""A polite client: how many HTTP attempts an API judge keeps in flight while a server says 429.

:class:`AIMDWindow` is additive increase, multiplicative decrease on the number of attempts in
flight (as TCP does with its congestion window): it starts at the judge's ``concurrency``; an
attempt answered 429 halves it, once per round trip (only an attempt sent after the last cut can
cut again, so one burst of 429s counts once), down to 1; every successful attempt adds
``increase / window`` (about ``increase`` per window of successes), up to ``concurrency``. A
rejected request waits :func:`backoff` (exponential, full jitter) before it asks for a slot again,
unless the server said how long to wait (``Retry-After``).

So a server that answers 429 without rate-limit headers (no ``Retry-After``, no
``x-ratelimit-limit-requests``) sees the client settle just above its limit instead of being
hammered by every worker at once.
"""
from __future__ import annotations

import asyncio
import random

#: the window gains ``INCREASE / window`` per successful attempt (slow: a rate limit is usually
#: a hard wall, and each probe past it costs a rejected request)
INCREASE = 0.15
#: the window is multiplied by this on a 429 (once per round trip)
DECREASE = 0.5
#: backoff of a rejected request: uniform in [0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**(n-1))]
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0


def backoff(n: int, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    """Seconds to wait before the ``n``-th retry (n >= 1): exponential with full jitter."""
    return random.uniform(0.0, min(cap, base * 2 ** max(0, n - 1)))


class AIMDWindow:
    """Attempts in flight at most ``int(size)``; see the module docstring. Counts ``accepted`` and
    ``rejected`` (429) attempts. Use from one event loop."""

    def __init__(self, limit: int, increase: float = INCREASE, decrease: float = DECREASE):
        self.limit = max(1, int(limit))
        self.size = float(self.limit)
        self.increase, self.decrease = increase, decrease
        self.in_flight = 0
        self.accepted = self.rejected = 0
        self.cuts = 0
        self._sent = 0  # attempts sent so far; an attempt's number tells if it predates the last cut
        self._cut_at = -1
        self._waiters: list[asyncio.Future] = []

    async def acquire(self) -> int:
        """Wait for a slot; returns the attempt's number (give it back to :meth:`release`)."""
        while self.in_flight >= max(1, int(self.size)):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.in_flight += 1
        self._sent += 1
        return self._sent

    def release(self, ticket: int, status: int | None) -> None:
        """Give the slot back: ``status`` of the reply (None: no reply, e.g. a timeout)."""
        self.in_flight -= 1
        if status == 429:
            self.rejected += 1
            if ticket > self._cut_at:  # sent after the last cut: a new sign of overload
                self.size = max(1.0, self.size * self.decrease)
                self._cut_at = self._sent
                self.cuts += 1
        elif status is not None and status < 400:
            self.accepted += 1
            self.size = min(float(self.limit), self.size + self.increase / self.size)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:  # each re-checks the window
            if not waiter.done():
                waiter.set_result(None)
