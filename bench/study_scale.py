"""Benchmark: a study at the paper's scale against the project's fake OpenAI server (zero latency).

    .venv/bin/python bench/study_scale.py                 # 400, 2,000 and 5,000 instructions x k = 5
    .venv/bin/python bench/study_scale.py --small         # 200 instructions (CI smoke test: tests/test_study_scale.py)
    .venv/bin/python bench/study_scale.py --sizes 5000    # one size

For each size N: a study of N instructions (the vendored SuperNI instructions, cycled and tagged so
that each is distinct) x k = 5 responses from an ``openai:`` policy served by ``tests/fake_openai.py``,
rated (5N ratings) and ranked in both orders (20N ranking calls) by an OpenAI-compatible judge through
the Batch API (the study's ``feedback.mode: batch``), then the analysis stage (04 consistency): 25N
stored answers, 125,000 at N = 5,000. Every stage is ``python -m sflib study run STUDY --only NN`` in
its own process; its wall time and its peak memory (the largest resident set of the process tree,
``os.wait4``) are recorded. 02 and 03 run twice: acquiring, then again from the annotation store (the
notebook's own cost, the target of <= 30 s). ``study plan`` / ``study status`` are timed at the end
(target <= 5 s at 125k answers), the store's size per answer is measured (target <= 1.5 KB) and peak
memory (target <= 4 GB). Reward models (05) and later stages are not part of this benchmark.

Results: ``bench/results/study_scale.json`` (``--out``), one entry per size, merged with what is there.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
K = 5
TARGETS = {"plan_s": 5.0, "status_s": 5.0, "notebook_s": 30.0, "store_bytes_per_answer": 1536, "peak_rss_mb": 4096}
STAGES = [("01", "responses"), ("02", "ratings"), ("03", "rankings"), ("04", "consistency")]


def instructions_file(folder: Path, n: int) -> Path:
    """``n`` distinct instructions: the vendored SuperNI ones cycled, each tagged with its number."""
    base = json.loads((ROOT / "data" / "original" / "instructions" / "natural_instructions.json").read_text())
    rows = []
    for i in range(n):
        src = base[i % len(base)]
        rows.append({"instruction": src["instruction"], "input": f"{src.get('input') or ''} [item {i}]".strip()})
    path = folder / "instructions.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def study_file(folder: Path, n: int, instructions: Path) -> Path:
    (folder / "judges").mkdir(exist_ok=True)
    (folder / "judges" / "fake-judge.yaml").write_text(
        "provider: openai\nmodel: gpt-4o-mini\nbase_url_env: OPENAI_BASE_URL\nconcurrency: 64\ntimeout: 60\n"
        "temperature: 0.0\nmax_tokens: 64\ntemplate: v1\nprice_input_per_mtok: 0.15\nprice_output_per_mtok: 0.60\n"
        "price_batch_input_per_mtok: 0.075\nprice_batch_output_per_mtok: 0.30\n", encoding="utf-8")
    path = folder / f"scale_{n}.yaml"
    path.write_text(f"""name: scale_{n}
seed: 0
budget_usd: null
instructions:
  paths: [{instructions}]
policy:
  name: openai:fake-policy
  k: {K}
  max_new_tokens: 64
  prompt_style: alpaca
feedback:
  judge: fake-judge
  mode: batch
  both_orders: true
""", encoding="utf-8")
    return path


def start_server() -> tuple[subprocess.Popen, str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from fake_openai import free_port

    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_openai.py"), str(free_port()), "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    m = re.search(r"(http://\S+/v1)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"the fake server did not start: {line!r}")
    return proc, m.group(1)


def timed(cmd: list[str], env: dict, log: Path) -> dict:
    """Run ``cmd``; wall seconds and the peak resident set (MB) of its whole process tree."""
    t0 = time.perf_counter()
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}; see {log}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def notebook_seconds(outputs: Path) -> float | None:
    """The notebook's own seconds from the newest run's timings.tsv (papermill start-up excluded)."""
    tsv = outputs / "runs" / "latest" / "timings.tsv"
    try:
        rows = [ln.split("\t") for ln in tsv.read_text().splitlines()[1:] if ln.strip()]
        return round(float(rows[-1][1]), 2)
    except (OSError, IndexError, ValueError):
        return None


def store_size(path: Path) -> dict:
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        answers = con.execute("SELECT COUNT(*) FROM annotations").fetchone()[0]
        batch_rows = con.execute("SELECT COUNT(*) FROM batch_requests").fetchone()[0]
    finally:
        con.close()
    size = path.stat().st_size
    out = {"answers": answers, "bytes": size, "bytes_per_answer": round(size / max(answers, 1), 1),
           "batch_request_rows": batch_rows}
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:  # where the bytes are: the answers themselves vs the Batch API request lines (dbstat, when compiled in)
        tables = dict(con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
        answers_part = sum(v for k, v in tables.items() if k in ("annotations", "texts", "annotations_status",
                                                                 "sqlite_autoindex_annotations_1", "sqlite_autoindex_texts_1"))
        batch_part = sum(v for k, v in tables.items() if "batch_requests" in k)
        out.update(answer_bytes_per_answer=round(answers_part / max(answers, 1), 1),
                   batch_line_bytes_per_answer=round(batch_part / max(answers, 1), 1),
                   free_pages=con.execute("PRAGMA freelist_count").fetchone()[0])
    except sqlite3.Error:
        pass
    finally:
        con.close()
    return out


def run_size(n: int, work: Path, log: Path) -> dict:
    folder = work / f"n{n}"
    folder.mkdir(parents=True)
    outputs = folder / "outputs"
    study = study_file(folder, n, instructions_file(folder, n))
    server, url = start_server()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SFLIB_OUTPUTS": str(outputs), "SFLIB_FIGURES": str(folder / "figures"),
           "OPENAI_BASE_URL": url, "OPENAI_API_KEY": "sk-bench-not-a-secret", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg"}
    sflib = [sys.executable, "-m", "sflib", "study"]
    result = {"instructions": n, "k": K, "ratings": n * K, "ranking_calls": n * K * (K - 1), "stages": {}}
    try:
        for nb, stage in STAGES:
            r = timed([*sflib, "run", str(study), "--only", nb, "--no-progress"], env, log)
            r["notebook_s"] = notebook_seconds(outputs)
            result["stages"][f"{nb}_{stage}"] = r
            print(f"  N={n} {nb} {stage}: {r}", flush=True)
        for nb, stage in STAGES[1:3]:  # again, every answer from the store: the notebook's own cost
            r = timed([*sflib, "run", str(study), "--only", nb, "--no-progress"], env, log)
            r["notebook_s"] = notebook_seconds(outputs)
            result["stages"][f"{nb}_{stage}_from_store"] = r
            print(f"  N={n} {nb} {stage} (from the store): {r}", flush=True)
        for cmd in ("plan", "status"):
            r = timed([*sflib, cmd, str(study)], env, log)
            result[f"{cmd}_s"], result[f"{cmd}_peak_rss_mb"] = r["wall_s"], r["peak_rss_mb"]
            print(f"  N={n} study {cmd}: {r}", flush=True)
    finally:
        server.kill()
        server.wait()
    result["store"] = store_size(outputs / "annotations.sqlite")
    result["peak_rss_mb"] = max(s["peak_rss_mb"] for s in result["stages"].values())
    return result


def verdicts(entry: dict) -> dict:
    """Each target met or not, for one size."""
    nbs = {k: v.get("notebook_s") for k, v in entry["stages"].items()
           if k.startswith(("02_", "03_")) and k.endswith("_from_store") or k.startswith("04_")}
    return {"plan_s": entry["plan_s"] <= TARGETS["plan_s"], "status_s": entry["status_s"] <= TARGETS["status_s"],
            "notebooks_02_03_04_s": all(v is not None and v <= TARGETS["notebook_s"] for v in nbs.values()),
            "store_bytes_per_answer": entry["store"]["bytes_per_answer"] <= TARGETS["store_bytes_per_answer"],
            "answer_bytes_per_answer": entry["store"].get("answer_bytes_per_answer", 1e9) <= TARGETS["store_bytes_per_answer"],
            "peak_rss_mb": entry["peak_rss_mb"] <= TARGETS["peak_rss_mb"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="200 instructions (a smoke test; about 2 minutes)")
    p.add_argument("--sizes", default="400,2000,5000", help="instruction counts, comma-separated")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "study_scale.json"))
    p.add_argument("--work", default=None, help="folder for the studies (default: a temporary folder, removed)")
    p.add_argument("--keep", action="store_true", help="keep the studies (under --work) to look at or re-run")
    args = p.parse_args(argv)
    sizes = [200] if args.small else [int(s) for s in args.sizes.split(",")]
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {}
    report.setdefault("sizes", {})
    report["machine"] = {"python": platform.python_version(), "cpus": len(os.sched_getaffinity(0)),
                         "platform": platform.platform(), "load_average_at_start": list(os.getloadavg())}
    report["targets"] = TARGETS
    keep = tempfile.mkdtemp(prefix="sflib-scale-", dir=args.work) if args.keep else None
    with (contextlib.nullcontext(keep) if keep else tempfile.TemporaryDirectory(prefix="sflib-scale-", dir=args.work)) as tmp:
        log = Path(tmp) / "bench.log"
        for n in sizes:
            print(f"study of {n} instructions x k={K} ({25 * n:,} answers)", flush=True)
            try:
                entry = run_size(n, Path(tmp), log)
            except Exception:
                print(log.read_text()[-4000:], file=sys.stderr)
                raise
            entry["targets_met"] = verdicts(entry)
            report["sizes"][str(n)] = entry
    if keep:
        print(f"the studies are kept in {keep}", flush=True)
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({n: {"answers": e["store"]["answers"], "plan_s": e["plan_s"], "status_s": e["status_s"],
                          "bytes_per_answer": e["store"]["bytes_per_answer"], "peak_rss_mb": e["peak_rss_mb"],
                          "targets_met": e["targets_met"]} for n, e in report["sizes"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
