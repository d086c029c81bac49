"""Batch mode against the fake server's /v1/files and /v1/batches: resume after a kill at every
step with zero lost and zero resubmitted requests, faulty batches finished by resubmitting only
what is missing, and the batch price."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sflib.core import costs
from sflib.feedback.annotate import annotate
from sflib.judges import batch as batch_mod
from sflib.judges.base import Request
from sflib.judges.openai_judge import OpenAIJudge
from sflib.feedback.parsing import parse_score
from sflib.feedback.store import AnnotationStore

ROOT = Path(__file__).resolve().parents[1]
N = 24
FAST = {"poll_s": 0.02}


def peek(path, sql):
    """A read-only look at another process's store (0 while it does not exist or is busy)."""
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute(sql).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


class SimulatedKill(BaseException):
    """Raised from a hook: the process 'dies' there (nothing after it runs)."""


def reqs(n=N, tag=""):
    return [Request([{"role": "user", "content": f"Rate the response on a scale of 1 to 7. {tag}Item {i}"}])
            for i in range(n)]


def judge_for(server, **kw):
    return OpenAIJudge("gpt-4o-mini", base_url=server.url, api_key="sk-test", timeout=5, **kw)


def run(judge, store, requests=None, **batch):
    return annotate(judge, requests or reqs(), store=store, template_version="v1", parse=parse_score,
                    progress=False, mode="batch", batch={**FAST, **batch})


@pytest.fixture(autouse=True)
def no_hooks():
    batch_mod.HOOKS.clear()
    yield
    batch_mod.HOOKS.clear()


def assert_each_submitted_once(server, n=N):
    b = server.batch
    assert b.uploads == 1 and b.batches_created == 1 and b.batch_lines == n
    assert len(b.batch_custom_ids) == n and set(b.batch_custom_ids.values()) == {1}


def test_batch_run_stores_everything_at_half_price(fake_openai_factory, tmp_path):
    server = fake_openai_factory()
    store = AnnotationStore(tmp_path / "s.sqlite")
    df = run(judge_for(server), store)
    assert (df["status"] == "ok").all() and df["value"].between(1, 7).all() and store.count("ok") == N
    assert_each_submitted_once(server)
    assert server.requests == 0  # nothing went to the online endpoint
    s = df.attrs["stats"]
    assert s["mode"] == "batch" and s["prompt_tokens"] == server.batch.batch_prompt_tokens > 0
    assert s["cost_usd"] == pytest.approx(0.5 * costs.cost("gpt-4o-mini", s["prompt_tokens"],
                                                           s["completion_tokens"]))
    jobs = store.batches()
    assert list(jobs["state"]) == ["collected"] and jobs["batch_id"].iloc[0].startswith("batch_")
    # same values as the online endpoint gives
    online = annotate(judge_for(server), reqs(), store=None, template_version="v1", parse=parse_score,
                      progress=False)
    assert list(online["value"]) == list(df["value"])
    again = run(judge_for(server), store)
    assert again["cached"].all() and server.batch.uploads == 1


@pytest.mark.parametrize("point", ["intent", "uploaded", "created", "polling", "downloading"])
def test_kill_at_each_step_resumes_without_loss_or_resubmission(fake_openai_factory, tmp_path, point):
    server = fake_openai_factory(batch_delay=0.3)
    path = tmp_path / "s.sqlite"

    def die(**info):
        if point != "downloading" or info["line"] == N // 2:
            raise SimulatedKill(point)

    batch_mod.HOOKS[point] = die
    store = AnnotationStore(path)
    with pytest.raises(SimulatedKill):
        run(judge_for(server), store)
    store.close()
    at_kill = (server.batch.uploads, server.batch.batches_created)
    assert at_kill == {"intent": (0, 0), "uploaded": (1, 0)}.get(point, (1, 1))
    batch_mod.HOOKS.clear()

    store = AnnotationStore(path)  # a new process: only what was committed is known
    df = run(judge_for(server), store)
    assert (df["status"] == "ok").all() and store.count("ok") == N  # zero lost
    assert_each_submitted_once(server)  # zero resubmitted: one upload, one batch, each id once
    assert df.attrs["stats"]["batches_resumed"] == 1
    assert list(store.batches()["state"]) == ["collected"]


def test_sigkill_while_polling_then_resume(fake_openai_factory, tmp_path):
    server = fake_openai_factory(batch_delay=1.5)
    path = tmp_path / "s.sqlite"
    script = (
        "import sys; sys.path.insert(0, sys.argv[3]); sys.path.insert(0, sys.argv[4])\n"
        "from test_batch import judge_for, run\n"
        "from sflib.feedback.store import AnnotationStore\n"
        "class S: url = sys.argv[1]\n"
        "run(judge_for(S), AnnotationStore(sys.argv[2]))\n")
    child = subprocess.Popen([sys.executable, "-c", script, server.url, str(path), str(ROOT),
                              str(ROOT / "tests")], env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 60
    while time.time() < deadline and child.poll() is None:
        if peek(path, "SELECT COUNT(*) FROM batches WHERE state = 'submitted'"):
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert server.batch.batches_created == 1 and server.batch.batch_lines == N
    df = run(judge_for(server), AnnotationStore(path))
    assert (df["status"] == "ok").all()
    assert_each_submitted_once(server)


@pytest.mark.parametrize("outcome,resubmitted", [
    ("expired", N - N // 2), ("failed", N), ("missing", 1), ("partial_errors", N // 3),
    ("truncated", 1), ("unknown_id", 0)])
def test_faulty_batches_resubmit_only_what_is_missing(fake_openai_factory, tmp_path, outcome,
                                                      resubmitted):
    server = fake_openai_factory(batch_outcomes=[outcome])
    store = AnnotationStore(tmp_path / "s.sqlite")
    df = run(judge_for(server), store)
    assert (df["status"] == "ok").all() and store.count("ok") == N  # nothing lost
    ids = server.batch.batch_custom_ids
    assert len(ids) == N and sum(1 for v in ids.values() if v == 2) == resubmitted
    assert max(ids.values()) <= 2
    assert server.batch.batches_created == (2 if resubmitted else 1)
    events = store.batch_events()
    s = df.attrs["stats"]
    assert s["batch_resubmitted"] == resubmitted
    if outcome == "truncated":
        assert "truncated_output" in set(events["kind"]) and s["batch_truncated_outputs"] == 1
    if outcome == "unknown_id":
        assert list(events["kind"]) == ["unknown_custom_id"] and s["batch_unknown_ids"] == 1
        assert "not-a-request-we-know" in events["detail"].iloc[0]
    if outcome in ("expired", "failed", "missing"):
        assert len(events) == 1 and events["kind"].iloc[0].endswith(("missing_results", "missing_ids"))


def test_cancelled_job_is_collected_and_the_rest_resubmitted(fake_openai_factory, tmp_path):
    server = fake_openai_factory(batch_delay=30)
    store = AnnotationStore(tmp_path / "s.sqlite")
    judge = judge_for(server)
    df = run(judge, store, max_wait_s=0.1)  # gives up waiting: the job stays open, nothing failed
    assert (df["error"] == "pending in a batch job; re-run to collect it").all()
    assert store.count() == 0 and df.attrs["stats"]["batch_pending"] == N
    assert batch_mod.cancel_jobs(judge, store) == ["batch_000001"]
    server.batch.batch_delay = 0
    df = run(judge, store)
    assert (df["status"] == "ok").all()
    ids = server.batch.batch_custom_ids
    assert sum(1 for v in ids.values() if v == 2) == N - N // 2 and server.batch.batches_created == 2


def test_persistent_batch_failure_is_stored_as_failed_after_max_rounds(fake_openai_factory, tmp_path):
    server = fake_openai_factory(batch_outcomes=lambda number, ids: "failed")
    store = AnnotationStore(tmp_path / "s.sqlite")
    df = run(judge_for(server), store, requests=reqs(3), max_rounds=1)
    assert (df["status"] == "failed").all() and store.count("failed") == 3
    assert df["error"].str.contains("status failed").all() and server.batch.batches_created == 2


def test_batch_needs_a_store_and_an_openai_judge(fake_openai):
    with pytest.raises(ValueError, match="needs a store"):
        annotate(judge_for(fake_openai), reqs(1), store=None, template_version="v", parse=parse_score,
                 mode="batch")
    with pytest.raises(ValueError, match="mode must be"):
        annotate(judge_for(fake_openai), reqs(1), store=None, template_version="v", parse=parse_score,
                 mode="bulk")


def test_batch_with_logprobs_gives_soft_scores(fake_openai_factory, tmp_path):
    server = fake_openai_factory(score_probs={"2": 0.5, "6": 0.5})
    store = AnnotationStore(tmp_path / "s.sqlite")
    df = run(judge_for(server, logprobs=True, top_logprobs=20), store, requests=reqs(4))
    assert df["soft"].sub(4.0).abs().max() < 1e-6 and (df["soft_source"] == "logprobs").all()
    uploaded = server.batch.file_content(store.batches()["input_file_id"].iloc[0]).decode("utf-8")
    body = json.loads(uploaded.splitlines()[0])["body"]  # what was sent (the store keeps it in the annotation)
    assert body["logprobs"] is True and body["top_logprobs"] == 20
