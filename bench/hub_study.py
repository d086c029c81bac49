"""Benchmark: ``studies/paper_full.yaml`` offline from a Hub cache holding files of the released size.

    .venv/bin/python bench/hub_study.py        # writes bench/results/hub_study.json

The released ``hbXNov/sparse_feedback`` files cannot be downloaded here (no network), so this builds a
Hub cache (``$HF_HOME/hub/datasets--hbXNov--sparse_feedback/snapshots/<commit>/``) with synthetic files
in the released layouts and at the released sizes (ratings CSV 20.2 MB, rankings CSV 53.4 MB, headerless,
the original quoting; SuperNI instruction texts, 5 responses per instruction, every pair ranked once;
a small rankings-RM train/val split), then times, with ``HF_HUB_OFFLINE=1``:

- ``python -m sflib study plan studies/paper_full.yaml``;
- ``python -m sflib study run studies/paper_full.yaml --only 04`` (seeds responses, ratings and
  rankings from the cache through ``huggingface_hub``, then notebook 04 on the full feedback).

What it measures is the time and memory of reading and analysing that much feedback, not the paper's
numbers (the texts and labels are synthetic).
"""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "f" * 40
SIZES = {"ratings": 20.2e6, "rankings": 53.4e6}


def write_cache(home: Path, seed: int = 0) -> dict:
    sys.path.insert(0, str(ROOT))
    from sflib.io import hub

    rnd = random.Random(seed)
    base = json.loads((ROOT / "data" / "original" / "instructions" / "natural_instructions.json").read_text())
    snap = home / "hub" / "datasets--hbXNov--sparse_feedback" / "snapshots" / COMMIT
    (snap / hub.RM_SPLIT_DIR).mkdir(parents=True)
    refs = snap.parent.parent / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text(COMMIT)
    rbuf, kbuf = io.StringIO(), io.StringIO()
    rw, kw = csv.writer(rbuf), csv.writer(kbuf)
    n = 0
    while rbuf.tell() < SIZES["ratings"] or kbuf.tell() < SIZES["rankings"]:
        src = base[n % len(base)]
        instruction = src["instruction"][: rnd.randint(80, 1500)] + f" (#{n})"
        inp = rnd.choice(["", src.get("input") or ""])[:600]
        responses = [" ".join(rnd.choice(["the", "answer", "is", "a", "short", "reply", "with", "words"])
                              for _ in range(rnd.randint(5, 60))) for _ in range(5)]
        if rbuf.tell() < SIZES["ratings"]:
            for r in responses:
                rw.writerow([instruction, inp, r, rnd.randint(1, 7)])
        if kbuf.tell() < SIZES["rankings"]:
            for a in range(5):
                for b in range(a + 1, 5):
                    kw.writerow([instruction, inp, responses[a], responses[b], rnd.choice(["(a)", "(b)", "equal"])])
        n += 1
    (snap / hub.RATINGS_FILE).write_text(rbuf.getvalue(), encoding="utf-8")
    (snap / hub.RANKINGS_FILE).write_text(kbuf.getvalue(), encoding="utf-8")
    prompt = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
              "request.\n\n### Instruction:\n{}\n\n### Response: ")
    for part, count in (("train", 200), ("val", 50)):
        data = {prompt.format(f"task {part} {i}"): {"sentences": [["better answer", "worse answer"]]} for i in range(count)}
        (snap / hub.RM_SPLIT_DIR / f"{part}.json").write_text(json.dumps(data), encoding="utf-8")
    return {"instructions": n, "ratings_mb": round(rbuf.tell() / 1e6, 1), "rankings_mb": round(kbuf.tell() / 1e6, 1),
            "ratings_rows": rbuf.getvalue().count("\n"), "rankings_rows": kbuf.getvalue().count("\n")}


def timed(cmd: list[str], env: dict) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {code}:\n{out[-3000:]}")
    return {"wall_s": round(time.perf_counter() - t0, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "output_tail": out[-600:]}


def main() -> int:
    out_path = ROOT / "bench" / "results" / "hub_study.json"
    with tempfile.TemporaryDirectory(prefix="sflib-hub-") as tmp:
        tmp = Path(tmp)
        files = write_cache(tmp / "hf")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "SFLIB_OUTPUTS": str(tmp / "out"), "SFLIB_FIGURES": str(tmp / "fig"),
               "MPLBACKEND": "Agg", "TOKENIZERS_PARALLELISM": "false"}
        study = str(ROOT / "studies" / "paper_full.yaml")
        report = {"machine": {"python": platform.python_version(), "cpus": len(os.sched_getaffinity(0)),
                              "load_average_at_start": list(os.getloadavg())},
                  "files": files,
                  "plan": timed([sys.executable, "-m", "sflib", "study", "plan", study], env),
                  "run_04": timed([sys.executable, "-m", "sflib", "study", "run", study, "--only", "04",
                                   "--no-progress"], env)}
        report["plan_after"] = timed([sys.executable, "-m", "sflib", "study", "plan", study], env)
        report["status"] = timed([sys.executable, "-m", "sflib", "study", "status", study], env)
        timings = (tmp / "out" / "runs" / "latest" / "timings.tsv").read_text()
        report["notebook_04_s"] = float(timings.splitlines()[-1].split("\t")[1])
        m = json.loads((tmp / "out" / "studies" / "paper_full" / "04_consistency" / "manifest.json").read_text())
        report["consistency_counts"] = m.get("counts")
        report["machine"]["load_average_at_end"] = list(os.getloadavg())
    out_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=1)[:3000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
