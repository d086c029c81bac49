"""bench/study_scale.py --small in CI (issue 22): a 200-instruction study against the fake server, every
stage run, the JSON written with per-stage wall time and peak memory. Times are reported, not asserted
(the full size is run and reported in bench/results/study_scale.json); what is asserted is that the
bench runs end to end, counts what it should, and that the store stays small per answer."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_study_scale_small(tmp_path):
    out = tmp_path / "study_scale.json"
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "study_scale.py"), "--small", "--out", str(out),
                        "--work", str(tmp_path)], capture_output=True, text=True, timeout=1800,
                       env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    entry = json.loads(out.read_text())["sizes"]["200"]
    assert set(entry["stages"]) == {"01_responses", "02_ratings", "03_rankings", "04_consistency",
                                    "02_ratings_from_store", "03_rankings_from_store"}
    for stage in entry["stages"].values():
        assert stage["wall_s"] > 0 and stage["peak_rss_mb"] > 0 and stage["notebook_s"] is not None
    # 1,000 ratings + 4,000 ranking calls (both orders) + the policy's 1,000 samples, each stored once
    assert entry["store"]["answers"] == 200 * 5 + 200 * 20 + 200 * 5
    # the answers themselves (annotations, their indexes, the shared texts) stay under 1.5 KB each; the Batch API
    # request lines come on top (reported as batch_line_bytes_per_answer; the whole file is bytes_per_answer)
    if "answer_bytes_per_answer" in entry["store"]:
        assert entry["store"]["answer_bytes_per_answer"] <= 1536
    assert entry["plan_s"] > 0 and entry["status_s"] > 0
