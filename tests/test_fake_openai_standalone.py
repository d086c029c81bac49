"""The standalone fake server (``cd tests && python fake_openai.py PORT LATENCY``), as a user runs it
for ``OPENAI_BASE_URL=... ./run_all.sh --study studies/example.yaml``: logprobs on chat completions
and the Batch API, through the project's own judge and annotate code."""
import math
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from fake_openai import free_port
from sflib.feedback.annotate import annotate
from sflib.judges import get_judge
from sflib.judges.base import Request
from sflib.feedback.parsing import parse_choice, parse_score
from sflib.feedback.store import AnnotationStore

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def standalone():
    """The standalone server in a subprocess on a free port; yields its base_url."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "fake_openai.py", str(port), "0", "--batch-delay", "0.2"],
                            cwd=TESTS, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()  # printed once it listens
        assert line.startswith(f"fake OpenAI server on http://127.0.0.1:{port}/v1"), line
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def judge(standalone, monkeypatch):
    """The example study's judge file, pointed at the server the way a user does it."""
    monkeypatch.setenv("OPENAI_BASE_URL", standalone)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return get_judge("gpt-4o-mini-logprobs", timeout=10)


def ratings(n, tag):
    return [Request([{"role": "user", "content": f"Rate the response on a scale of 1 to 7. {tag} {i}"}])
            for i in range(n)]


def expected_from_fake(score: int) -> float:
    """The fake's default alternatives: 0.6 on the served score, 0.2 on each neighbour in 1..7."""
    weights = {k: w for k, w in ((score, 0.6), (score - 1, 0.2), (score + 1, 0.2)) if 1 <= k <= 7}
    return sum(k * w for k, w in weights.items()) / sum(weights.values())


def test_usage_line_and_bad_arguments():
    out = subprocess.run([sys.executable, "fake_openai.py", "not-a-port"], cwd=TESTS,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "usage:" in out.stderr and "--batch-delay" in out.stderr


def test_chat_logprobs_give_soft_verdicts(judge, tmp_path):
    assert judge.params["logprobs"] is True and judge.params["top_logprobs"] == 20
    store = AnnotationStore(tmp_path / "s.sqlite")
    df = annotate(judge, ratings(6, "online"), store=store, template_version="v1", parse=parse_score,
                  progress=False)
    assert (df["status"] == "ok").all() and (df["soft_source"] == "logprobs").all()
    assert df.attrs["stats"]["logprobs_missing"] == 0
    for value, soft in zip(df["value"], df["soft"]):
        assert soft == pytest.approx(expected_from_fake(int(value)))

    pairs = [Request([{"role": "user", "content": f"Which is better, Output (a) or Output (b)? Pair {i}"}])
             for i in range(6)]
    df = annotate(judge, pairs, store=store, template_version="v1", parse=parse_choice, progress=False)
    assert (df["soft_source"] == "logprobs").all()
    for value, soft in zip(df["value"], df["soft"]):  # choice_p = 0.7 on the served label
        assert soft == pytest.approx(0.7 if value == "a" else 0.3)

    raw = openai.OpenAI(base_url=judge.base_url, api_key="sk-test").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "score 1 to 7"}],
        logprobs=True, top_logprobs=3)
    digits = [t for t in raw.choices[0].logprobs.content if t.token.isdigit()]
    assert len(digits) == 1 and 2 <= len(digits[0].top_logprobs) <= 3
    assert math.fsum(math.exp(t.logprob) for t in digits[0].top_logprobs) == pytest.approx(1.0)


def test_batch_round_trip(judge, tmp_path):
    client = openai.OpenAI(base_url=judge.base_url, api_key="sk-test")
    before = {b.id for b in client.batches.list()}
    store = AnnotationStore(tmp_path / "s.sqlite")
    requests = ratings(5, "batch")
    df = annotate(judge, requests, store=store, template_version="v1", parse=parse_score,
                  progress=False, mode="batch", batch={"poll_s": 0.05})
    assert (df["status"] == "ok").all() and (df["soft_source"] == "logprobs").all()
    assert df.attrs["stats"]["mode"] == "batch" and df.attrs["stats"]["batches_created"] == 1
    new = [b for b in client.batches.list() if b.id not in before]
    assert len(new) == 1 and new[0].status == "completed" and new[0].request_counts.total == 5
    assert list(store.batches()["batch_id"]) == [new[0].id]
    lines = client.files.content(new[0].output_file_id).text.splitlines()
    assert sorted(line.split('"custom_id": "')[1].split('"')[0] for line in lines) == sorted(df["key"])

    online = annotate(judge, requests, store=None, template_version="v1", parse=parse_score,
                      progress=False)  # the same answers as the chat endpoint gives
    assert list(online["value"]) == list(df["value"]) and list(online["soft"]) == list(df["soft"])
    again = annotate(judge, requests, store=store, template_version="v1", parse=parse_score,
                     progress=False, mode="batch", batch={"poll_s": 0.05})
    assert again["cached"].all() and len([b for b in client.batches.list() if b.id not in before]) == 1
