"""Opt-in: the rate -> rank -> consistency chain against a real llama.cpp server (sflib.generation.serve_local).

Run with ``SFLIB_INTEGRATION=1`` after ``pip install "llama-cpp-python[server]"`` (the ``local-judge``
extra). It serves the bundled SmolLM2-135M-Instruct with ``python -m sflib.generation.serve_local`` (which loads
the model with ``use_extra_bufts=False``: the stock ``python -m llama_cpp.server`` dies on the first
request on CPUs reporting AMX) and drives the CLI as a user would, with the shipped judge config
``smollm2-llamacpp``. A 135M model answers many prompts with unparsable text, so the checks are that
every request got an answer (no failure, the server stayed up), that incomplete runs say so and exit
3 unless ``--allow-partial``, and that consistency computes what the valid answers allow or says in
one line why it cannot. A few minutes on two CPU cores.
"""
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("SFLIB_INTEGRATION") != "1", reason="opt in with SFLIB_INTEGRATION=1"),
]

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "original" / "alpaca_generation" / "sample_generation.json"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("llama_cpp.server")
    port = _free_port()
    log = tmp_path_factory.mktemp("llamacpp") / "server.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "sflib.generation.serve_local", "--port", str(port)], stdout=fh,
                                stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sflib.generation.serve_local exited with {proc.returncode}:\n{log.read_text()}")
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2)
            break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail(f"the server did not come up in 120 s:\n{log.read_text()}")
    yield {"url": url, "proc": proc, "log": log}
    proc.terminate()
    proc.wait(timeout=30)


def _cli(*args, url, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT), SFLIB_JUDGE_URL=url, SFLIB_OUTPUTS=str(cwd))
    return subprocess.run([sys.executable, "-m", "sflib", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=900)


def test_rate_rank_consistency_chain_against_llama_cpp(server, tmp_path):
    gens = json.loads(SAMPLE.read_text())
    # two instructions with two short responses each: 4 ratings, 2 pairs x 2 orders
    picked = [g for g in gens if g["instruction"] != gens[0]["instruction"]][:1] + gens[:1]
    small = [{"instruction": g["instruction"], "input": g.get("input", ""),
              "responses": sorted(g["responses"], key=len)[:2]} for g in picked]
    (tmp_path / "gen.json").write_text(json.dumps(small))
    common = ["--judge", "smollm2-llamacpp", "--input", "gen.json", "--store", "s.sqlite", "--quiet"]

    rated = _cli("rate", *common, "--output", "ratings.jsonl", "--allow-partial", url=server["url"], cwd=tmp_path)
    print("rate:", rated.stdout, rated.stderr)
    assert rated.returncode == 0, rated.stderr
    assert "n=4 " in rated.stdout and "0 failed" in rated.stdout, rated.stdout + rated.stderr
    ratings = [json.loads(line) for line in (tmp_path / "ratings.jsonl").read_text().splitlines()]
    assert len(ratings) == 4 and all(r["status"] in ("ok", "invalid") and r["raw"] for r in ratings)
    n_invalid = sum(r["status"] == "invalid" for r in ratings)
    if n_invalid:
        assert f"{n_invalid} invalid" in rated.stderr
        # without --allow-partial the same (now cached) run is refused, the counts printed, nothing asked
        again = _cli("rate", *common, "--output", "ratings2.jsonl", url=server["url"], cwd=tmp_path)
        assert again.returncode == 3 and f"{n_invalid} invalid" in again.stderr and "0 asked" in again.stdout
        assert not (tmp_path / "ratings2.jsonl").exists() and (tmp_path / "ratings2.partial.jsonl").exists()

    ranked = _cli("rank", *common, "--output", "rankings.jsonl", "--allow-partial", url=server["url"], cwd=tmp_path)
    print("rank:", ranked.stdout, ranked.stderr)
    assert ranked.returncode == 0, ranked.stderr
    assert "4 requests:" in ranked.stdout and "0 failed" in ranked.stdout, ranked.stdout + ranked.stderr
    rankings = [json.loads(line) for line in (tmp_path / "rankings.jsonl").read_text().splitlines()]
    assert len(rankings) == 2 and all(r["raw_12"] and r["raw_21"] for r in rankings)

    consistency = _cli("consistency", "--ratings", "ratings.jsonl", "--rankings", "rankings.jsonl", "--bootstrap",
                       "50", "--json", "consistency.json", url=server["url"], cwd=tmp_path)
    print("consistency:", consistency.returncode, consistency.stdout[:600], consistency.stderr[-600:])
    if consistency.returncode == 0:
        report = json.loads((tmp_path / "consistency.json").read_text())
        assert "consistency" in consistency.stdout.lower() and report
    else:  # too few valid answers to compare: one line saying so, no traceback
        assert consistency.returncode == 1 and "can be compared" in consistency.stderr
        assert "Traceback" not in consistency.stderr
    assert server["proc"].poll() is None, server["log"].read_text()  # the server survived every request
