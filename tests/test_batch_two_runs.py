"""Two batch-mode processes on one store and one set of items: one provider batch, the second run
attaches to it; a run killed before it uploaded has its job taken over (looked up, not re-sent)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sflib.feedback.store import AnnotationStore
from test_batch import N, assert_each_submitted_once, peek

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, os, sys, time
from sflib.feedback.annotate import annotate
from sflib.judges.base import Request
from sflib.judges.openai_judge import OpenAIJudge
from sflib.feedback.parsing import parse_score
from sflib.feedback.store import AnnotationStore
url, path, go, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
reqs = [Request([{"role": "user", "content": f"Rate the response on a scale of 1 to 7. Item {i}"}])
        for i in range(n)]
judge = OpenAIJudge("gpt-4o-mini", base_url=url, api_key="sk-test", timeout=5)
store = AnnotationStore(path)
while not os.path.exists(go):  # start together: both are imported and waiting
    time.sleep(0.005)
df = annotate(judge, reqs, store=store, template_version="v1", parse=parse_score, progress=False,
              mode="batch", batch={"poll_s": 0.05})
s = df.attrs["stats"]
print(json.dumps({"ok": int((df["status"] == "ok").sum()), "created": s["batches_created"],
                  "attached": s["batches_attached"], "left": s["left_to_other_run"]}))
"""


def _start(server, path, go):
    return subprocess.Popen([sys.executable, "-c", SCRIPT, server.url, str(path), str(go), str(N)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_batch_runs_started_together_make_one_batch(fake_openai_factory, tmp_path):
    server = fake_openai_factory(batch_delay=1.5)
    path, go = tmp_path / "s.sqlite", tmp_path / "go"
    runs = [_start(server, path, go) for _ in range(2)]
    time.sleep(3.0)  # both imported (they wait for the go file)
    go.touch()
    outs = [p.communicate(timeout=120) for p in runs]
    assert all(p.returncode == 0 for p in runs), [e for _, e in outs]
    stats = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    assert all(s["ok"] == N for s in stats)
    assert_each_submitted_once(server)  # one upload, one batch, each item once
    assert sorted(s["created"] for s in stats) == [0, 1]
    with AnnotationStore(path) as store:
        assert store.count("ok") == N and len(store.batches()) == 1


def test_a_dead_runs_job_is_taken_over_without_a_second_batch(fake_openai_factory, tmp_path):
    server = fake_openai_factory(batch_delay=0.5)
    path, go = tmp_path / "s.sqlite", tmp_path / "go"
    go.touch()
    first = _start(server, path, go)
    deadline = time.time() + 60
    while time.time() < deadline and peek(path, "SELECT COUNT(*) FROM batches "
                                                "WHERE state = 'submitted'") < 1:
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = _start(server, path, go)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["ok"] == N
    assert_each_submitted_once(server)
