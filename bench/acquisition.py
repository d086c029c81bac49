"""Benchmark: feedback acquisition against a fake OpenAI-compatible server (tests/fake_openai.py).

    .venv/bin/python bench/acquisition.py            # ~4 minutes; writes bench/results/acquisition.json

(a) throughput: the original scripts' loop (sequential, one request at a time, plain sync ``openai``
    client) vs ``sflib.feedback.annotate`` + ``OpenAIJudge`` at concurrency 64, 0.2 s server latency
    (server in its own process). Target: >= 50x.
(b) rate limit: the server allows 600 requests/minute (token bucket, 429 + Retry-After beyond).
    Sustained rate of successful replies (a) with the judge's own ``rpm=600`` budget, (b) with no
    budget but ``auto_rpm`` (pace at the limit the 429s announce), (c) with nothing but the
    server's 429s and Retry-After. Target: >= 90% of the limit.
(c) faults: 10% of requests fail (429 / 500 / garbled body / truncated body / hang past the
    timeout); the judge is given only 1 client retry so some requests do fail. Target: zero
    annotations lost — every request is stored, failures visibly, and re-runs finish them all.
(d) crash: the engine runs in a subprocess that is SIGKILLed halfway; a restart resumes from the
    store. Target: total requests the server saw <= items + concurrency, and every request paid
    twice is one the store recorded as in flight (reported by the restarted run).
(e) cost: 1,000 ratings online vs through the Batch API (fake server's /v1/files + /v1/batches),
    token counts from the fake server's usage, priced as gpt-4o-mini (batch at 50%).

(f) two writers on one store, (g) generation SIGKILLed three times: see bench/acquisition_runs.py.

    .venv/bin/python bench/acquisition.py --only d e   # rerun some parts; merged into the JSON
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fake_openai import FakeOpenAI, free_port
from acquisition_runs import bench_generation_kill, bench_two_writers

from sflib.feedback.annotate import annotate
from sflib.judges.base import Request
from sflib.judges.openai_judge import OpenAIJudge
from sflib.feedback.parsing import parse_score
from sflib.feedback.store import AnnotationStore

LATENCY = 0.2
CONCURRENCY = 64
#: (b) variants: (label, the judge's rpm budget, auto_rpm, whether the server's 429s carry headers)
B_VARIANTS = [("b_rate_limit_client_budget", 600, False, True),
              ("b_rate_limit_auto_from_429_headers", None, True, True),
              ("b_rate_limit_429_only", None, False, True),
              ("b_rate_limit_429_no_headers", None, False, False)]
#: the most rejected (429) requests per accepted one a polite client may cause
MAX_REJECTED_PER_ACCEPTED = 0.10


def rating_requests(n: int, tag: str) -> list[Request]:
    return [Request([{"role": "system", "content": "You are a careful judge."},
                     {"role": "user", "content": f"Rate the response on a scale of 1 to 7. "
                                                 f"[{tag}] Instruction {i}: say something useful."}])
            for i in range(n)]


def run_annotate(judge, requests, store_path):
    store = AnnotationStore(store_path)
    try:
        return annotate(judge, requests, store=store, template_version="bench-v1", parse=parse_score,
                        progress=False)
    finally:
        store.close()


# ------------------------------------------------------------------------------------ (a)
def bench_throughput(tmp: Path, n_engine: int, n_sequential: int) -> dict:
    from openai import OpenAI

    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_openai.py"), str(port),
                               str(LATENCY)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        server.stdout.readline()  # "fake OpenAI server on ..." once it listens
        url = f"http://127.0.0.1:{port}/v1"
        client = OpenAI(base_url=url, api_key="sk-bench", max_retries=0)
        requests = rating_requests(n_sequential, "sequential")
        t0 = time.perf_counter()
        for r in requests:  # the original scripts' loop
            client.chat.completions.create(model="gpt-3.5-turbo", messages=r.messages,
                                           temperature=0.0, max_tokens=512)
        seq_s = time.perf_counter() - t0
        client.close()

        judge = OpenAIJudge("gpt-3.5-turbo", base_url=url, api_key="sk-bench",
                            concurrency=CONCURRENCY)
        df = run_annotate(judge, rating_requests(n_engine, "engine"), tmp / "a.sqlite")
        stats = df.attrs["stats"]
    finally:
        server.terminate()
        server.wait()
    seq_rate = n_sequential / seq_s
    eng_rate = n_engine / stats["wall_s"]
    return {
        "latency_s": LATENCY,
        "sequential": {"requests": n_sequential, "wall_s": round(seq_s, 2),
                       "requests_per_s": round(seq_rate, 2)},
        "engine": {"requests": n_engine, "concurrency": CONCURRENCY, "wall_s": round(stats["wall_s"], 2),
                   "requests_per_s": round(eng_rate, 1), "ok": stats["ok"], "failed": stats["failed"]},
        "speedup": round(eng_rate / seq_rate, 1),
        "ideal_speedup": round(CONCURRENCY * (seq_s / n_sequential) / LATENCY, 1),
        "target": ">= 50x",
        "pass": eng_rate / seq_rate >= 50 and stats["ok"] == n_engine,
    }


# ------------------------------------------------------------------------------------ (b)
def bench_rate_limit(tmp: Path, n: int, client_rpm: float | None, auto_rpm: bool,
                     headers: bool = True, limit_rpm: float = 600) -> dict:
    with FakeOpenAI(LATENCY, rpm=limit_rpm, rate_limit_headers=headers) as server:
        judge = OpenAIJudge("gpt-3.5-turbo", base_url=server.url, api_key="sk-bench",
                            concurrency=CONCURRENCY, rpm=client_rpm, auto_rpm=auto_rpm)
        tag = f"rpm-{client_rpm}-{auto_rpm}-{headers}"
        df = run_annotate(judge, rating_requests(n, tag), tmp / f"b-{tag}.sqlite")
        stats = df.attrs["stats"]
        ok_times = sorted(server.ok_times)
        start = server.times[0]
        # steady state: successful replies after the first 5 s (the bucket starts full)
        steady = [t for t in ok_times if t >= start + 5.0]
        steady_rate = (len(steady) - 1) / (steady[-1] - steady[0]) * 60 if len(steady) > 1 else 0.0
        overall = len(ok_times) / (ok_times[-1] - start) * 60
        rejected, accepted = server.outcomes["429"], len(ok_times)
        ratio = rejected / max(1, accepted)
        return {
            "limit_rpm": limit_rpm, "client_rpm": client_rpm, "auto_rpm": auto_rpm,
            "server_sends_rate_limit_headers": headers, "requests": n,
            "wall_s": round(stats["wall_s"], 1), "ok": stats["ok"], "failed": stats["failed"],
            "server_429s": rejected, "server_accepted": accepted,
            "rejected_per_accepted": round(ratio, 4),
            "sustained_rpm_overall": round(overall, 1),
            "sustained_rpm_steady": round(steady_rate, 1),
            "fraction_of_limit": round(steady_rate / limit_rpm, 3),
            "target": f">= 0.90 of the limit, nothing lost, rejected <= "
                      f"{MAX_REJECTED_PER_ACCEPTED:.0%} of accepted",
            "pass": (steady_rate >= 0.9 * limit_rpm and stats["ok"] == n
                     and ratio <= MAX_REJECTED_PER_ACCEPTED),
        }


# ------------------------------------------------------------------------------------ (c)
def bench_faults(tmp: Path, n: int) -> dict:
    with FakeOpenAI(LATENCY, fault_rate=0.10, hang_s=2.5, retry_after=0.2, seed=11) as server:
        judge = OpenAIJudge("gpt-3.5-turbo", base_url=server.url, api_key="sk-bench",
                            concurrency=CONCURRENCY, timeout=1.0, max_retries=1)
        requests = rating_requests(n, "faults")
        store_path = tmp / "c.sqlite"
        runs = []
        for attempt in range(6):
            df = run_annotate(judge, requests, store_path)
            s = df.attrs["stats"]
            with AnnotationStore(store_path) as store:
                stored, stored_failed = store.count(), store.count("failed")
            runs.append({"run": attempt + 1, "called": s["called"], "ok": s["ok"],
                         "invalid": s["invalid"], "failed": s["failed"], "rows_returned": len(df),
                         "rows_stored": stored, "stored_failures": stored_failed,
                         "wall_s": round(s["wall_s"], 1)})
            if s["failed"] == 0 and s["invalid"] == 0:
                break
        outcomes = dict(server.outcomes)
    lost = n - runs[-1]["rows_stored"]
    never_lost = all(r["rows_returned"] == n and r["rows_stored"] == n for r in runs)
    return {
        "requests": n, "fault_rate": 0.10, "client_max_retries": 1, "timeout_s": 1.0,
        "server_outcomes": outcomes, "runs": runs,
        "first_run_failed_and_stored": runs[0]["failed"],
        "final_ok": runs[-1]["ok"], "lost": lost,
        "target": "0 lost; failures stored and finished by re-runs",
        "pass": lost == 0 and never_lost and runs[-1]["ok"] == n,
    }


# ------------------------------------------------------------------------------------ (d)
def _stored(path: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM annotations").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def bench_crash(tmp: Path, n: int) -> dict:
    store_path = tmp / "d.sqlite"
    with FakeOpenAI(LATENCY) as server:
        cmd = [sys.executable, __file__, "--worker", server.url, str(store_path), str(n)]
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while _stored(store_path) < n // 2 and child.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        stored_at_kill = _stored(store_path)
        with AnnotationStore(store_path) as store:
            in_flight_at_kill = len(store.in_flight())
        requests_at_kill = server.requests
        time.sleep(LATENCY * 2)  # let the dead run's in-flight requests reach the server
        requests_before_restart = server.requests
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"restarted worker failed:\n{done.stderr[-2000:]}")
        second = json.loads(done.stdout.strip().splitlines()[-1])
        total = server.requests
        with AnnotationStore(store_path) as store:
            final_ok, final_rows = store.count("ok"), store.count()
    return {
        "requests": n, "concurrency": CONCURRENCY, "killed_with": "SIGKILL",
        "stored_at_kill": stored_at_kill, "server_requests_at_kill": requests_at_kill,
        "server_requests_first_run": requests_before_restart,
        "second_run": second, "total_server_requests": total,
        "bound": n + CONCURRENCY, "final_ok": final_ok, "final_rows": final_rows,
        "in_flight_recorded_at_kill": in_flight_at_kill,
        "paid_twice": total - n, "reported_as_repaid_by_restart": second.get("in_flight_repaid"),
        "target": "total requests <= items + concurrency; all items ok after restart; every "
                  "request paid twice was recorded as in flight",
        "pass": total <= n + CONCURRENCY and final_ok == n and total - n <= in_flight_at_kill
                and second.get("in_flight_repaid") == in_flight_at_kill,
    }


def worker(url: str, store_path: str, n: int) -> None:
    """(d)'s child process: annotate n requests into the store, print the stats as JSON."""
    judge = OpenAIJudge("gpt-3.5-turbo", base_url=url, api_key="sk-bench", concurrency=CONCURRENCY)
    df = run_annotate(judge, rating_requests(n, "crash"), store_path)
    s = df.attrs["stats"]
    print(json.dumps({k: s[k] for k in ("requests", "cached", "called", "ok", "failed",
                                        "in_flight_repaid")}), flush=True)


# ------------------------------------------------------------------------------------ (e)
def bench_batch_cost(tmp: Path, n: int, model: str = "gpt-4o-mini") -> dict:
    from sflib.core import costs

    out = {"requests": n, "priced_as": model, "price_per_m": list(costs.price(model))}
    with FakeOpenAI(batch_delay=1.0) as server:
        for mode in ("online", "batch"):
            judge = OpenAIJudge(model, base_url=server.url, api_key="sk-bench", concurrency=CONCURRENCY)
            store = AnnotationStore(tmp / f"e-{mode}.sqlite")
            try:
                df = annotate(judge, rating_requests(n, "cost"), store=store, template_version="bench-v1",
                              parse=parse_score, progress=False, mode=mode, batch={"poll_s": 0.2})
            finally:
                store.close()
            s = df.attrs["stats"]
            out[mode] = {"ok": s["ok"], "prompt_tokens": s["prompt_tokens"],
                         "completion_tokens": s["completion_tokens"], "cost_usd": s["cost_usd"],
                         "wall_s": round(s["wall_s"], 2)}
        out["batch"]["server_prompt_tokens"] = server.batch.batch_prompt_tokens
        out["batch"]["server_completion_tokens"] = server.batch.batch_completion_tokens
        out["batch"]["uploads"], out["batch"]["batches"] = server.batch.uploads, server.batch.batches_created
        out["online"]["server_requests"] = server.requests
    out["batch_over_online"] = round(out["batch"]["cost_usd"] / out["online"]["cost_usd"], 4)
    out["cost_per_1000_online_usd"] = round(out["online"]["cost_usd"] * 1000 / n, 6)
    out["cost_per_1000_batch_usd"] = round(out["batch"]["cost_usd"] * 1000 / n, 6)
    same_tokens = (out["online"]["prompt_tokens"] == out["batch"]["prompt_tokens"]
                   == out["batch"]["server_prompt_tokens"])
    out["target"] = "batch costs 50% of online for the same tokens; all ok"
    out["pass"] = (same_tokens and out["online"]["ok"] == n == out["batch"]["ok"]
                   and abs(out["batch_over_online"] - 0.5) < 1e-3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run, ~1 min)")
    parser.add_argument("--only", nargs="+", choices=list("abcdefg"),
                        help="run only these parts and merge them into the recorded JSON")
    parser.add_argument("--worker", nargs=3, metavar=("URL", "STORE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return 0
    import openai

    q = args.quick
    parts = set(args.only or "abcdefg")
    results = {"machine": {"python": platform.python_version(), "openai": openai.__version__,
                           "cpus": os.cpu_count(), "platform": platform.platform(),
                           "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
               "quick": q}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "a" in parts:
            print("(a) throughput ...", flush=True)
            results["a_throughput"] = bench_throughput(tmp, 300 if q else 1000, 20 if q else 100)
            print(json.dumps(results["a_throughput"], indent=1), flush=True)
        for label, rpm, auto, headers in B_VARIANTS if "b" in parts else []:
            print(f"(b) {label} ...", flush=True)
            results[label] = bench_rate_limit(tmp, 150 if q else 600, rpm, auto, headers)
            print(json.dumps(results[label], indent=1), flush=True)
        if "c" in parts:
            print("(c) faults ...", flush=True)
            results["c_faults"] = bench_faults(tmp, 300 if q else 1000)
            print(json.dumps(results["c_faults"], indent=1), flush=True)
        if "d" in parts:
            print("(d) SIGKILL and resume ...", flush=True)
            results["d_crash"] = bench_crash(tmp, 400 if q else 1000)
            print(json.dumps(results["d_crash"], indent=1), flush=True)
        if "e" in parts:
            print("(e) cost of 1,000 ratings online vs batch ...", flush=True)
            results["e_batch_cost"] = bench_batch_cost(tmp, 300 if q else 1000)
            print(json.dumps(results["e_batch_cost"], indent=1), flush=True)
        if "f" in parts:
            print("(f) two rate processes on one store ...", flush=True)
            results["f_two_writers"] = bench_two_writers(tmp, 300 if q else 1000, 100 if q else 300)
            print(json.dumps(results["f_two_writers"], indent=1), flush=True)
        if "g" in parts:
            print("(g) generate with n per request, SIGKILLed 3 times ...", flush=True)
            results["g_generation_kill"] = bench_generation_kill(tmp, 100 if q else 300)
            print(json.dumps(results["g_generation_kill"], indent=1), flush=True)
    results["total_wall_s"] = round(time.perf_counter() - t0, 1)
    out = ROOT / "bench" / "results" / "acquisition.json"
    if args.only and not q and out.exists():  # merge the rerun parts into the recorded results
        recorded = json.loads(out.read_text())
        results["machine"]["rerun_parts"] = sorted(parts)
        recorded.setdefault("reruns", []).append({"parts": sorted(parts), "machine": results["machine"],
                                                  "wall_s": results["total_wall_s"]})
        for key, value in results.items():
            if key not in ("machine", "quick", "total_wall_s"):
                recorded[key] = value
        results = recorded
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["all_pass"] = all(v.get("pass") for v in results.values() if isinstance(v, dict)
                              and "pass" in v)
    if not q:  # a quick run is a smoke test: printed, not recorded
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {out.relative_to(ROOT)}")
    if "a_throughput" in results:
        a = results["a_throughput"]
        print(f"(a) speedup {a['speedup']}x ({a['engine']['requests_per_s']} vs "
              f"{a['sequential']['requests_per_s']} req/s)")
    for label, *_ in B_VARIANTS:
        if label in results:
            b = results[label]
            print(f"(b) {label}: {b['sustained_rpm_steady']} rpm = {b['fraction_of_limit']:.0%} of "
                  f"{b['limit_rpm']:.0f}, {b['server_429s']} 429s "
                  f"({b.get('rejected_per_accepted', float('nan')):.1%} of accepted), {b['failed']} failed")
    if "c_faults" in results:
        c = results["c_faults"]
        print(f"(c) {c['first_run_failed_and_stored']} failed+stored in run 1, {len(c['runs'])} runs, "
              f"final ok {c['final_ok']}/{c['requests']}, lost {c['lost']}")
    if "d_crash" in results:
        d = results["d_crash"]
        print(f"(d) stored {d['stored_at_kill']} at kill, total server requests "
              f"{d['total_server_requests']} <= {d['bound']}, paid twice {d.get('paid_twice')} "
              f"(recorded in flight {d.get('in_flight_recorded_at_kill')}), final ok {d['final_ok']}")
    if "e_batch_cost" in results:
        e = results["e_batch_cost"]
        print(f"(e) 1,000 ratings: online ${e['cost_per_1000_online_usd']:.4f}, batch "
              f"${e['cost_per_1000_batch_usd']:.4f} ({e['batch_over_online']:.0%})")
    if "f_two_writers" in results:
        f = results["f_two_writers"]
        print(f"(f) two writers: paid twice {f['started_together']['paid_twice']} (together), "
              f"{f['started_apart']['paid_twice']} (apart) of {f['items']}")
    if "g_generation_kill" in results:
        g = results["g_generation_kill"]
        print(f"(g) generation kill: {g['samples_paid_twice']} samples paid twice, "
              f"{g['in_flight_recorded_total']} recorded in flight")
    print(f"all pass: {results['all_pass']}  ({results['total_wall_s']} s)")
    return 0 if results["all_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
