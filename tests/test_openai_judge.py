"""OpenAIJudge against a real HTTP fake server: retries, Retry-After, timeouts, garbled bodies,
concurrency and rate budgets, configuration errors, and the API key never landing in the store."""
import asyncio
import time

import pytest

from sflib.feedback.annotate import annotate
from sflib.judges import get_judge
from sflib.judges.base import Request
from sflib.judges.openai_judge import DUMMY_KEY, ConfigurationError, OpenAIJudge
from sflib.feedback.parsing import parse_score
from sflib.feedback.store import AnnotationStore


def reqs(n, text="Rate the response on a scale of 1 to 7. Item"):
    return [Request([{"role": "user", "content": f"{text} {i}"}]) for i in range(n)]


def judge_for(server, **kw):
    kw.setdefault("api_key", "sk-test")
    kw.setdefault("timeout", 2)
    return OpenAIJudge("gpt-4o-mini", base_url=server.url, **kw)


def test_answers_tokens_params_and_registry(fake_openai):
    judge = get_judge("openai:gpt-4o-mini", base_url=fake_openai.url, api_key="sk-test", seed=3)
    assert isinstance(judge, OpenAIJudge) and judge.name == "openai:gpt-4o-mini"
    assert judge.params == {"temperature": 0.0, "max_tokens": 512, "seed": 3}
    assert "sk-test" not in repr(judge)
    results = dict(judge.complete(reqs(5) + reqs(1, "Which is better, Output (a) or Output (b)?")))
    assert sorted(results) == list(range(6))
    assert all(c.ok and c.attempts == 1 and c.prompt_tokens > 0 for c in results.values())
    assert results[0].text.startswith("Score: ") and results[5].text in ("Output (a)", "Output (b)")
    assert fake_openai.requests == 6


def test_concurrency_bound_is_respected(fake_openai_factory):
    server = fake_openai_factory(latency=0.05)
    results = list(judge_for(server, concurrency=4).complete(reqs(24)))
    assert len(results) == 24 and server.max_in_flight == 4


def test_retry_after_is_honoured_and_attempts_counted(fake_openai_factory):
    server = fake_openai_factory(schedule=["429", "429", "500", "ok"], retry_after=0.3)
    [(i, c)] = list(judge_for(server, concurrency=1).complete(reqs(1)))
    assert c.ok and c.attempts == 4 and server.requests == 4
    gaps = [b - a for a, b in zip(server.times, server.times[1:])]
    assert gaps[0] >= 0.27 and gaps[1] >= 0.27  # waited the server's Retry-After


def test_garbled_and_truncated_bodies_are_asked_again(fake_openai_factory):
    server = fake_openai_factory(schedule=["garbled", "truncated", "ok"])
    [(i, c)] = list(judge_for(server, concurrency=1).complete(reqs(1)))
    assert c.ok and c.text.startswith("Score:") and server.requests == 3 and c.attempts == 3


def test_persistent_errors_become_failures_not_exceptions(fake_openai_factory):
    server = fake_openai_factory(schedule=lambda n, prompt: "500" if "0" in prompt[-2:] else "ok",
                                 retry_after=0.01)
    results = dict(judge_for(server, concurrency=2, max_retries=1).complete(reqs(3)))
    assert not results[0].ok and "500" in results[0].error and results[0].attempts == 2
    assert results[1].ok and results[2].ok


def test_hang_past_timeout_is_a_stored_failure_then_retried(fake_openai_factory, tmp_path):
    server = fake_openai_factory(schedule=["hang", "hang"], hang_s=1.0)
    store = AnnotationStore(tmp_path / "s.sqlite")
    judge = judge_for(server, concurrency=1, timeout=0.3, max_retries=1)
    df = annotate(judge, reqs(1), store=store, template_version="v1", parse=parse_score, progress=False)
    assert df["status"].iloc[0] == "failed" and "Timeout" in df["error"].iloc[0]
    assert list(store.failures()["key"]) == list(df["key"])
    df2 = annotate(judge, reqs(1), store=store, template_version="v1", parse=parse_score, progress=False)
    assert df2["status"].iloc[0] == "ok" and store.count("failed") == 0 and server.requests == 3


def test_mixed_faults_lose_nothing_and_rerun_completes(fake_openai_factory, tmp_path):
    server = fake_openai_factory(fault_rate=0.35, seed=7, hang_s=0.8, retry_after=0.02)
    store = AnnotationStore(tmp_path / "s.sqlite")
    judge = judge_for(server, concurrency=16, timeout=0.4, max_retries=1)
    items = reqs(80)
    df = annotate(judge, items, store=store, template_version="v1", parse=parse_score, progress=False)
    assert len(df) == 80 and store.count() == 80  # every request is stored: ok or a visible failure
    assert set(df["status"]) <= {"ok", "failed"} and (df["status"] == "ok").sum() > 40
    assert df.loc[df.status == "failed", "error"].notna().all()
    assert sum(server.outcomes[k] for k in ("429", "500", "garbled", "truncated", "hang")) > 0
    failed = int((df["status"] == "failed").sum())
    server.fault_rate = 0.0
    before = server.requests
    df2 = annotate(judge, items, store=store, template_version="v1", parse=parse_score, progress=False)
    assert df2.attrs["stats"]["called"] == failed and server.requests - before == failed
    assert (df2["status"] == "ok").all() and list(df2["key"]) == list(df["key"])
    # the same replies as a fault-free server would give: parsing matches the served score
    assert df2["value"].between(1, 7).all()


def test_server_rate_limit_429s_are_absorbed(fake_openai_factory):
    server = fake_openai_factory(rpm=600, burst=3)  # 10 requests/s, 429 + Retry-After beyond
    results = dict(judge_for(server, concurrency=8).complete(reqs(20)))
    assert all(c.ok for c in results.values()) and server.outcomes["429"] > 0
    assert server.outcomes["ok"] == 20


def test_client_rpm_budget_is_respected(fake_openai_factory):
    server = fake_openai_factory()
    list(judge_for(server, concurrency=8, rpm=240).complete(reqs(12)))  # 4/s, burst of 4
    times = sorted(server.times)
    assert len(times) == 12 and server.outcomes["429"] == 0
    assert times[-1] - times[0] >= (12 - 4) / 4 * 0.9
    # no 1-second window holds more than burst + rate requests
    assert max(sum(1 for t in times if s <= t < s + 1.0) for s in times) <= 8


def test_client_tpm_budget_is_respected(fake_openai_factory):
    server = fake_openai_factory()
    judge = judge_for(server, concurrency=8, tpm=6000, max_tokens=40)  # ~60 tokens/request estimate
    judge.tpm_window = 1.0  # a 100-token bucket refilled at 100 tokens/s: ~1.7 requests/s
    list(judge.complete(reqs(6)))
    times = sorted(server.times)
    assert times[-1] - times[0] >= 1.5


def test_missing_key_for_openai_is_a_configuration_error(monkeypatch, fake_openai):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    judge = OpenAIJudge("gpt-4o-mini")
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        judge.check()
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        annotate(judge, reqs(2), store=None, template_version="v", parse=parse_score, progress=False)
    # a custom endpoint needs no key: a dummy one is sent
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.url)
    local = OpenAIJudge("local-model")
    assert all(c.ok for _, c in local.complete(reqs(1)))
    assert fake_openai.auth_headers == [f"Bearer {DUMMY_KEY}"]
    with pytest.raises(ConfigurationError):
        OpenAIJudge("m", concurrency=0)


def test_api_key_never_lands_in_the_store(monkeypatch, fake_openai_factory, tmp_path):
    secret = "sk-FAKE-secret-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    server = fake_openai_factory(schedule=["401", "ok", "ok"])
    path = tmp_path / "s.sqlite"
    store = AnnotationStore(path)
    judge = OpenAIJudge("gpt-4o-mini", base_url=server.url, concurrency=1, max_retries=0)
    df = annotate(judge, reqs(3), store=store, template_version="v1", parse=parse_score, progress=False)
    assert server.auth_headers[0] == f"Bearer {secret}"  # the key was really used...
    assert list(df["status"]) == ["failed", "ok", "ok"] and "***" in df["error"].iloc[0]
    files = [p for p in tmp_path.iterdir() if p.name.startswith("s.sqlite")]
    assert any(p.name.endswith("-wal") for p in files)
    for p in files:  # ...and appears in no byte of the database, WAL included
        assert secret.encode() not in p.read_bytes(), p
    assert secret not in df.to_string() and secret not in str(df.attrs)


def test_complete_works_inside_a_running_event_loop(fake_openai):
    judge = judge_for(fake_openai)

    async def notebook_cell():  # Jupyter runs cells inside an event loop
        return list(judge.complete(reqs(3)))

    assert len(asyncio.run(notebook_cell())) == 3


def test_unstored_results_never_exceed_concurrency(fake_openai_factory):
    """A worker starts a new request only once the consumer has taken (and stored) an answer, so
    a crash loses at most `concurrency` requests: in flight plus handed over but not stored."""
    server = fake_openai_factory()
    gen = judge_for(server, concurrency=4).complete(reqs(40))
    next(gen)
    time.sleep(0.3)  # a slow consumer: the judge must not race ahead
    assert server.requests == 4
    next(gen)
    time.sleep(0.2)
    assert server.requests == 5
    gen.close()
    assert server.requests == 5


def test_auto_rpm_paces_at_the_limit_a_429_announces(fake_openai_factory):
    counts = {}
    for auto in (False, True):
        server = fake_openai_factory(rpm=1200, burst=2)  # 20/s, announced in x-ratelimit-limit-requests
        results = dict(judge_for(server, concurrency=16, auto_rpm=auto).complete(reqs(30)))
        assert all(c.ok for c in results.values())
        counts[auto] = server.outcomes["429"]
    # the AIMD window already keeps a header-less client polite (30 items: no 429 storm); the
    # announced limit does better still
    assert counts[True] < counts[False] <= 60


def test_content_null_is_retried_within_the_run_and_its_tokens_counted(fake_openai_factory):
    server = fake_openai_factory(schedule=["null", "null", "ok"])
    [(i, c)] = list(judge_for(server, concurrency=1).complete(reqs(1)))
    assert c.ok and c.text.startswith("Score:") and c.attempts == 3 and server.requests == 3
    with_null = c.prompt_tokens
    plain = fake_openai_factory()
    [(i, one)] = list(judge_for(plain, concurrency=1).complete(reqs(1)))
    assert with_null == 3 * one.prompt_tokens  # every answered attempt was billed and is counted
    always = fake_openai_factory(schedule=lambda n, prompt: "null")
    [(i, c)] = list(judge_for(always, concurrency=1, max_retries=2).complete(reqs(1)))
    assert not c.ok and "no text" in c.error and always.requests == 3


def test_on_start_fires_when_a_request_is_sent_not_while_it_waits_for_the_rate_limit(fake_openai_factory):
    """A request marked in flight is one the provider may bill: one still waiting for the client's rpm
    budget must not be marked (a kill then would report it as possibly paid, and it was never sent)."""
    server = fake_openai_factory()
    started = []
    judge = judge_for(server, concurrency=4, rpm=60)  # one request per second, all 4 workers waiting at once
    list(judge.complete(reqs(4), on_start=lambda i: started.append(time.monotonic())))
    arrived = sorted(server.times)
    assert len(started) == len(arrived) == 4
    assert arrived[-1] - arrived[0] >= 2.5
    assert all(0 <= a - s < 0.5 for s, a in zip(sorted(started), arrived))


def test_requests_in_flight_at_sigkill_are_recorded_and_reported(fake_openai_factory, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from test_batch import peek

    root = Path(__file__).resolve().parents[1]
    server = fake_openai_factory(latency=0.3)
    path = tmp_path / "s.sqlite"
    n, concurrency = 120, 8  # ~4.5 s of work: the kill lands mid-run even on a loaded machine
    script = (
        "import sys\n"
        "from sflib.feedback.annotate import annotate\nfrom sflib.judges.base import Request\n"
        "from sflib.judges.openai_judge import OpenAIJudge\nfrom sflib.feedback.parsing import parse_score\n"
        "from sflib.feedback.store import AnnotationStore\n"
        f"reqs = [Request([{{'role': 'user', 'content': f'Rate on 1 to 7. Item {{i}}'}}]) for i in range({n})]\n"
        f"judge = OpenAIJudge('gpt-4o-mini', base_url=sys.argv[1], api_key='sk', concurrency={concurrency})\n"
        "annotate(judge, reqs, store=AnnotationStore(sys.argv[2]), template_version='v', "
        "parse=parse_score, progress=False)\n")
    child = subprocess.Popen([sys.executable, "-c", script, server.url, str(path)],
                             env={**os.environ, "PYTHONPATH": str(root)})
    deadline = time.time() + 60
    while time.time() < deadline and child.poll() is None:
        if peek(path, "SELECT COUNT(*) FROM annotations") >= 12:
            break
        time.sleep(0.02)
    assert child.poll() is None, "the run finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    store = AnnotationStore(path)
    stored, left = store.count(), store.in_flight()
    assert 0 < len(left) <= concurrency and not set(left["key"]) & set(store.to_frame()["key"])
    time.sleep(0.5)
    sent_by_dead_run = server.requests
    items = [Request([{"role": "user", "content": f"Rate on 1 to 7. Item {i}"}]) for i in range(n)]
    judge = OpenAIJudge("gpt-4o-mini", base_url=server.url, api_key="sk", concurrency=concurrency)
    df = annotate(judge, items, store=store, template_version="v", parse=parse_score, progress=False)
    assert (df["status"] == "ok").all() and store.in_flight().empty
    assert df.attrs["stats"]["in_flight_repaid"] == len(left)
    # what was paid twice is exactly what the store said was in flight (at most)
    repaid = server.requests - n
    assert sent_by_dead_run - stored == repaid and repaid <= len(left)


def _instructions(n):
    import pandas as pd

    return pd.DataFrame({"instruction": [f"Write a haiku about item {i}." for i in range(n)],
                         "input": [""] * n})


def test_n_samples_in_one_request_are_paid_once_and_stored_per_sample(fake_openai_factory, tmp_path):
    from sflib.generation.sampling_openai import generate_openai

    server = fake_openai_factory()
    judge = OpenAIJudge("policy", base_url=server.url, api_key="sk", temperature=1.0)
    store = AnnotationStore(tmp_path / "s.sqlite")
    out = generate_openai(_instructions(3), judge, k=4, store=store, progress=False, n_per_request=True)
    assert server.requests == 3 and server.n_asked == [4, 4, 4]  # one request per instruction
    assert len(out) == 12 and out.groupby("instruction_id")["response"].nunique().eq(4).all()
    rows = store.to_frame()
    assert len(rows) == 12 and sorted({r["choice"] for r in rows["meta"]}) == [0, 1, 2, 3]
    # the prompt was paid once per instruction: only the first choice carries prompt tokens
    assert (rows["prompt_tokens"] > 0).sum() == 3
    singles = fake_openai_factory()
    one_by_one = generate_openai(_instructions(3), OpenAIJudge("policy", base_url=singles.url,
                                                               api_key="sk", temperature=1.0),
                                 k=4, store=False, progress=False, n_per_request=False)
    assert singles.requests == 12 and out.attrs["stats"]["prompt_tokens"] * 4 == \
        one_by_one.attrs["stats"]["prompt_tokens"]
    # each sample is addressable: forget one, and a re-run asks only for it
    store.delete([rows["key"].iloc[0]])
    again = generate_openai(_instructions(3), judge, k=4, store=store, progress=False, n_per_request=None)
    assert server.requests == 4 and server.n_asked[-1] == 1
    assert list(again["response"]) == list(out["response"])


def test_server_without_n_gets_the_rest_one_by_one(fake_openai_factory):
    from sflib.generation.sampling_openai import generate_openai

    server = fake_openai_factory(support_n=False)  # like llama.cpp: one choice whatever n is
    judge = OpenAIJudge("policy", base_url=server.url, api_key="sk", temperature=1.0)
    out = generate_openai(_instructions(2), judge, k=3, store=False, progress=False, n_per_request=True)
    assert len(out) == 6 and server.requests == 2 + 4


def _refused_url() -> str:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def test_a_server_that_is_not_there_is_not_asked_by_every_request(monkeypatch):
    """Connection refused and no reply in the run: the other requests still retrying stop ("stopped retrying")
    and those not yet sent fail at once ("not sent: ...") instead of each retrying; a call right after (a
    second pass) sends nothing; a later one tries again."""
    import sflib.judges.openai_judge as oj

    judge = OpenAIJudge("m", base_url=_refused_url(), concurrency=4, max_retries=3, timeout=5)
    reqs = [Request(messages=[{"role": "user", "content": f"q{i}"}]) for i in range(10)]
    start = time.monotonic()
    out = dict(judge.complete(reqs))
    errors = sorted(c.error.split(":")[0] for c in out.values())
    assert len(out) == 10 and errors.count("APIConnectionError") == 1  # the first to give up, after its retries
    assert errors.count("stopped retrying") == 3 and errors.count("not sent") == 6  # the other 3 asking; the rest
    assert all(f"{judge.base_url} refused connections" in c.error for c in out.values() if c.attempts <= 1)
    assert time.monotonic() - start < 15  # one request's retries (0.5 + 1 + 2 s with jitter), not 10 x 4 of them
    again = dict(judge.complete(reqs[:3]))  # within REFUSED_MEMORY_S: nothing is sent
    assert all(c.attempts == 0 and c.error.startswith("not sent: ") for c in again.values())
    monkeypatch.setattr(oj, "REFUSED_MEMORY_S", 0.0)  # later: the server is asked again
    later = dict(judge.complete(reqs[:1]))
    assert later[0].attempts == judge.max_retries + 1 and later[0].error.startswith("APIConnectionError")


def test_a_server_that_answered_once_keeps_being_asked(fake_openai_factory):
    """The breaker is only for a server never reached: after a reply, failures are retried as before."""
    server = fake_openai_factory(schedule=["ok"] + ["500"] * 200)
    judge = OpenAIJudge("m", base_url=server.url, concurrency=1, max_retries=1, timeout=5)
    reqs = [Request(messages=[{"role": "user", "content": f"q{i}"}]) for i in range(4)]
    out = dict(judge.complete(reqs))
    assert sum(c.text is not None for c in out.values()) == 1
    assert all(c.attempts >= 1 for c in out.values())  # every request was sent
