"""The polite client (sflib.judges.throttle): an AIMD window on attempts in flight, and what it does
against a server that answers 429 without any rate-limit header."""
import asyncio

from sflib.judges.base import Request
from sflib.judges.openai_judge import OpenAIJudge
from sflib.judges.throttle import AIMDWindow, backoff


def test_window_slow_start_one_cut_per_round_and_additive_increase():
    async def scenario():
        w = AIMDWindow(64)
        assert w.size == 16 and w.slow_start
        tickets = [await w.acquire() for _ in range(16)]
        assert w.in_flight == 16
        for t in tickets[:4]:  # successes in slow start: +1 each
            w.release(t, 200)
        assert w.size == 20
        for t in tickets[4:]:  # a burst of 429s, all sent before the cut: one cut
            w.release(t, 429)
        assert w.cuts == 1 and not w.slow_start and 1.0 <= w.size <= 10
        size = w.size
        t = await w.acquire()
        w.release(t, 200)
        assert abs(w.size - (size + 0.1 / size)) < 1e-9  # additive increase
        t = await w.acquire()
        w.release(t, 429)  # sent after the cut: cuts again
        assert w.cuts == 2 and w.size <= size
        return w

    w = asyncio.run(scenario())
    assert w.rejected == 13 and w.accepted == 5


def test_backoff_is_exponential_with_full_jitter():
    draws = [backoff(n) for n in (1, 2, 3, 4) for _ in range(200)]
    assert all(0 <= d <= 0.5 * 2 ** 3 for d in draws)
    assert max(backoff(4) for _ in range(200)) > 0.5 * 2 ** 2  # the cap grows with n
    assert max(backoff(30) for _ in range(50)) <= 30.0


def test_header_less_429s_stay_a_small_fraction_of_accepted(fake_openai_factory):
    # 20 requests/second allowed, 2 at once; 429s say nothing (no Retry-After, no limit header)
    server = fake_openai_factory(latency=0.05, rpm=1200, burst=4, rate_limit_headers=False)
    judge = OpenAIJudge("gpt-4o-mini", base_url=server.url, api_key="sk-test", concurrency=32)
    reqs = [Request([{"role": "user", "content": f"Rate on a scale of 1 to 7. Item {i}"}])
            for i in range(120)]
    results = dict(judge.complete(reqs))
    assert all(c.ok for c in results.values())
    # without the window every worker hammers the server: thousands of 429s for 120 items
    assert server.outcomes["429"] <= 0.3 * 120, server.outcomes


def test_usage_of_replies_without_choices_is_counted(fake_openai_factory):
    server = fake_openai_factory(schedule=["empty", "empty", "ok"])
    judge = OpenAIJudge("gpt-4o-mini", base_url=server.url, api_key="sk-test", concurrency=1)
    [(_, c)] = list(judge.complete([Request([{"role": "user", "content": "Rate on 1 to 7. x"}])]))
    single = fake_openai_factory()
    [(_, one)] = list(OpenAIJudge("gpt-4o-mini", base_url=single.url, api_key="sk-test")
                      .complete([Request([{"role": "user", "content": "Rate on 1 to 7. x"}])]))
    assert c.ok and c.attempts == 3 and server.requests == 3
    assert c.prompt_tokens == 3 * one.prompt_tokens > 0  # the two empty replies were billed too
