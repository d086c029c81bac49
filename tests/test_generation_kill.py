"""``generate`` with ``n`` samples per request, SIGKILLed mid-run and restarted: the samples paid
twice are exactly those the store recorded as in flight, and the restart reports them."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sflib.feedback.store import AnnotationStore
from test_batch import peek

ROOT = Path(__file__).resolve().parents[1]
N_INSTR, K = 60, 4

SCRIPT = """
import json, sys
import pandas as pd
from sflib.generation.sampling_openai import generate_openai
from sflib.judges.openai_judge import OpenAIJudge
from sflib.feedback.store import AnnotationStore
url, path, n, k = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
instr = pd.DataFrame({"instruction": [f"Write a haiku about item {i}." for i in range(n)], "input": [""] * n})
judge = OpenAIJudge("policy", base_url=url, api_key="sk-test", temperature=1.0, concurrency=6)
out = generate_openai(instr, judge, k=k, store=AnnotationStore(path), progress=False, n_per_request=True)
s = out.attrs["stats"]
print(json.dumps({"rows": len(out), "in_flight_repaid": s["in_flight_repaid"]}))
"""


def _run(server, path):
    return subprocess.Popen([sys.executable, "-c", SCRIPT, server.url, str(path), str(N_INSTR), str(K)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_generation_sigkill_restart_repays_only_what_was_recorded_in_flight(fake_openai_factory, tmp_path):
    server = fake_openai_factory(latency=0.4)
    path = tmp_path / "s.sqlite"
    child = _run(server, path)
    deadline = time.time() + 120
    while time.time() < deadline and child.poll() is None:
        if peek(path, "SELECT COUNT(*) FROM annotations") >= 40:
            break
        time.sleep(0.02)
    assert child.poll() is None, "the run finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    in_flight = peek(path, "SELECT COUNT(*) FROM in_flight")
    assert 0 < in_flight <= 6 * K
    time.sleep(1.0)  # the dead run's requests reach the server
    again = _run(server, path)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["rows"] == N_INSTR * K
    repaid = sum(server.n_asked) - N_INSTR * K  # samples asked (paid) beyond those needed
    # every sample paid twice was recorded (one recorded just before the kill may not have been sent)
    assert repaid <= in_flight == stats["in_flight_repaid"] and repaid >= in_flight - 6 * K
    assert "were in flight when an earlier run stopped" in err
    with AnnotationStore(path) as store:
        assert store.count("ok") == N_INSTR * K and store.in_flight().empty
