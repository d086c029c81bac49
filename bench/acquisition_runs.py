"""Parts (f) and (g) of bench/acquisition.py: several runs on one store, and generation restarts.

(f) two writers: two ``python -m sflib rate --judge openai:stub ... --concurrency 16`` processes on the
    same 1,000 items and the same store, started together and started 300 stored items apart.
    Target: 0 paid twice, both exit 0, both outputs equal to the store.
(g) generation kill: ``generate_openai`` with ``n`` samples per request (300 instructions x 4),
    SIGKILLed three times and restarted. Target: samples paid twice = samples recorded in flight at
    the kills.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _count(path: Path, sql: str) -> int:
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(sql).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _wait(path: Path, n: int, child, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and child.poll() is None:
        if _count(path, "SELECT COUNT(*) FROM annotations") >= n:
            return
        time.sleep(0.02)


# ------------------------------------------------------------------------------------ (f)
def _rate(url: str, tmp: Path, items: Path, name: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_BASE_URL": url, "OPENAI_API_KEY": "sk-bench"}
    return subprocess.Popen(
        [sys.executable, "-m", "sflib", "rate", "--judge", "openai:stub", "--input", str(items),
         "--output", str(tmp / f"{name}.jsonl"), "--store", str(tmp / "store.sqlite"),
         "--concurrency", "16", "--quiet"],
        env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def bench_two_writers(tmp: Path, n: int, apart: int, latency: float = 0.2,
                      apart_latency: float = 0.5) -> dict:
    from fake_openai import FakeOpenAI

    from sflib.feedback.store import AnnotationStore

    out = {"items": n, "concurrency_each": 16, "latency_s": latency,
           "latency_s_started_apart": apart_latency}
    for label, gap in (("started_together", 0), ("started_apart", apart)):
        folder = tmp / f"f-{label}"
        folder.mkdir()
        items = folder / "items.json"
        items.write_text(json.dumps([{"instruction": f"Explain topic number {i}.", "input": "",
                                      "response": f"Answer {i}."} for i in range(n)]))
        # started apart: a slower server, so that the first run is still going when the second
        # has started (a process start takes seconds on a loaded machine)
        with FakeOpenAI(apart_latency if gap else latency) as server:
            a = _rate(server.url, folder, items, "a")
            if gap:
                _wait(folder / "store.sqlite", gap, a)
            b = _rate(server.url, folder, items, "b")
            (out_a, err_a), (out_b, err_b) = a.communicate(timeout=600), b.communicate(timeout=600)
            paid = sum(server.prompts.values())
            twice = sum(c - 1 for c in server.prompts.values() if c > 1)
        with AnnotationStore(folder / "store.sqlite") as store:
            stored = sorted(int(v) for v in store.to_frame()["value"])
        same = []
        for name in ("a", "b"):
            try:
                scores = sorted(pd.read_json(folder / f"{name}.jsonl", lines=True)["score"].astype(int))
            except (ValueError, KeyError):
                scores = None
            same.append(scores == stored)
        overlapped = "left to another run" in out_a + out_b
        out[label] = {"exit_codes": [a.returncode, b.returncode], "paid_requests": paid,
                      "runs_overlapped": overlapped,
                      "paid_twice": twice, "outputs_equal_store": same,
                      "summary_a": out_a.strip().splitlines()[-1:],
                      "summary_b": out_b.strip().splitlines()[-1:],
                      "stderr_tail": [err_a[-300:], err_b[-300:]] if a.returncode or b.returncode else []}
    out["target"] = "0 paid twice; both exit 0; both outputs equal to the store"
    out["pass"] = all(out[k]["paid_twice"] == 0 and out[k]["exit_codes"] == [0, 0]
                      and all(out[k]["outputs_equal_store"]) for k in ("started_together", "started_apart"))
    return out


# ------------------------------------------------------------------------------------ (g)
GEN_SCRIPT = """
import json, sys
import pandas as pd
from sflib.generation.sampling_openai import generate_openai
from sflib.judges.openai_judge import OpenAIJudge
from sflib.feedback.store import AnnotationStore
url, path, n, k = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
instr = pd.DataFrame({"instruction": [f"Write a haiku about item {i}." for i in range(n)], "input": [""] * n})
judge = OpenAIJudge("policy", base_url=url, api_key="sk-bench", temperature=1.0, concurrency=16)
out = generate_openai(instr, judge, k=k, store=AnnotationStore(path), progress=False, n_per_request=True)
s = out.attrs["stats"]
print(json.dumps({"rows": len(out), "in_flight_repaid": s["in_flight_repaid"]}))
"""


def bench_generation_kill(tmp: Path, n: int = 300, k: int = 4, kills: int = 3,
                          latency: float = 0.3) -> dict:
    from fake_openai import FakeOpenAI

    path = tmp / "g.sqlite"
    need = n * k
    recorded, stored_at = [], []
    with FakeOpenAI(latency) as server:
        cmd = [sys.executable, "-c", GEN_SCRIPT, server.url, str(path), str(n), str(k)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for i in range(kills):
            child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            _wait(path, need * (i + 1) // (kills + 1), child)
            child.send_signal(signal.SIGKILL)
            child.wait()
            recorded.append(_count(path, "SELECT COUNT(*) FROM in_flight"))
            stored_at.append(_count(path, "SELECT COUNT(*) FROM annotations"))
            time.sleep(latency * 2)  # the dead run's requests reach the server
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        last = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {}
        samples_asked, requests = sum(server.n_asked), server.requests
    repaid = samples_asked - need
    return {
        "instructions": n, "k": k, "kills": kills, "samples_needed": need,
        "requests": requests, "samples_asked": samples_asked, "samples_paid_twice": repaid,
        "stored_at_each_kill": stored_at, "in_flight_recorded_at_each_kill": recorded,
        "in_flight_recorded_total": sum(recorded), "final_run": last,
        "final_rows": _count(path, "SELECT COUNT(*) FROM annotations WHERE status = 'ok'"),
        "unrecorded_paid_twice": max(0, repaid - sum(recorded)),
        "target": "every sample paid twice was recorded in flight at a kill (paid twice <= recorded; "
                  "a request recorded just before a kill may not have reached the server); all rows stored",
        "pass": repaid <= sum(recorded) and last.get("rows") == need,
    }
