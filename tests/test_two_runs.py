"""Two ``rate`` processes on one store and one set of items, against the fake server: exactly one
paid request per item (started together, started apart), nothing lost, both outputs equal to the
store; one killed while the other runs: the survivor takes its claims over, and what was paid twice
is at most what the dead run had recorded as in flight."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from sflib.feedback.store import AnnotationStore
from test_batch import peek

ROOT = Path(__file__).resolve().parents[1]
N = 120
KEY = "sk-two-runs-test-key-0123456789"


def _items(path: Path, n: int = N) -> Path:
    rows = [{"instruction": f"Explain topic number {i}.", "input": "", "response": f"Answer {i}."}
            for i in range(n)]
    path.write_text(json.dumps(rows))
    return path


def _rate(server, tmp: Path, items: Path, name: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_BASE_URL": server.url,
           "OPENAI_API_KEY": KEY}
    return subprocess.Popen(
        [sys.executable, "-m", "sflib", "rate", "--judge", "openai:stub", "--input", str(items),
         "--output", str(tmp / f"{name}.jsonl"), "--store", str(tmp / "store.sqlite"),
         "--concurrency", "4", "--quiet", *extra],
        env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _paid_twice(server) -> int:
    return sum(c - 1 for c in server.prompts.values() if c > 1)


def _wait_stored(path: Path, n: int, child, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and child.poll() is None:
        if peek(path, "SELECT COUNT(*) FROM annotations") >= n:
            return
        time.sleep(0.02)


def _check_outputs_equal_store(tmp: Path, names) -> None:
    with AnnotationStore(tmp / "store.sqlite") as store:
        rows = store.to_frame()
        assert len(rows) == N and (rows["status"] == "ok").all()
        stored = sorted(int(v) for v in rows["value"])
    for name in names:
        out = pd.read_json(tmp / f"{name}.jsonl", lines=True)
        assert len(out) == N and sorted(out["score"].astype(int)) == stored


def test_two_runs_started_together_pay_once(fake_openai_factory, tmp_path):
    server = fake_openai_factory(latency=0.6)
    items = _items(tmp_path / "items.json")
    a, b = _rate(server, tmp_path, items, "a"), _rate(server, tmp_path, items, "b")
    outs = [p.communicate(timeout=300) for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, outs
    assert _paid_twice(server) == 0 and sum(server.prompts.values()) == N
    _check_outputs_equal_store(tmp_path, ["a", "b"])
    # whichever run was left items by the other says so in its summary line
    assert any("left to another run" in out for out, _ in outs) or server.requests == N


def test_two_runs_started_apart_pay_once(fake_openai_factory, tmp_path):
    server = fake_openai_factory(latency=0.6)
    items = _items(tmp_path / "items.json")
    a = _rate(server, tmp_path, items, "a")
    _wait_stored(tmp_path / "store.sqlite", N // 6, a)
    assert a.poll() is None, "the first run finished before the second started"
    b = _rate(server, tmp_path, items, "b")
    (_, err_a), (out_b, err_b) = a.communicate(timeout=300), b.communicate(timeout=300)
    assert a.returncode == 0 and b.returncode == 0, (err_a, err_b)
    assert _paid_twice(server) == 0 and sum(server.prompts.values()) == N
    assert "in flight when an earlier run stopped" not in err_b  # the first run is alive
    assert "left to another run" in out_b
    _check_outputs_equal_store(tmp_path, ["a", "b"])


def test_one_run_killed_while_the_other_runs(fake_openai_factory, tmp_path):
    server = fake_openai_factory(latency=0.6)
    items = _items(tmp_path / "items.json")
    path = tmp_path / "store.sqlite"
    a, b = _rate(server, tmp_path, items, "a"), _rate(server, tmp_path, items, "b")
    _wait_stored(path, N // 3, a)
    assert a.poll() is None and b.poll() is None
    a.send_signal(signal.SIGKILL)
    a.wait()
    in_flight_at_kill = peek(path, "SELECT COUNT(*) FROM in_flight")
    out_b, err_b = b.communicate(timeout=300)
    assert b.returncode == 0, err_b
    with AnnotationStore(path) as store:
        assert store.count("ok") == N and store.in_flight().empty
        assert store.execute("SELECT COUNT(*) FROM claims")[0][0] == 0
    # only requests the dead run had sent (recorded in flight, its or the survivor's) are paid twice
    assert _paid_twice(server) <= in_flight_at_kill
    out = pd.read_json(tmp_path / "b.jsonl", lines=True)
    assert len(out) == N
