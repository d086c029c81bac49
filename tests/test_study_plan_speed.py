"""study plan at the paper's scale (issue 22): prompt characters counted without rendering (exact), stored
keys looked up by primary key, and the responses' sizes kept beside the study so a later plan does not read
25,000 responses again."""
from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from sflib.feedback.ratings import render_messages, task_block
from sflib.study import prompt_chars

ROOT = Path(__file__).resolve().parents[1]


def test_char_count_equals_rendering():
    base = json.loads((ROOT / "data" / "original" / "instructions" / "natural_instructions.json").read_text())
    rnd = random.Random(0)
    for _ in range(500):
        x = rnd.choice(base)
        ins, inp = x["instruction"], rnd.choice(["", x.get("input") or "", "  ", "nan"])
        a = rnd.choice(["resp  ", "resp\n", "", "  ", " r ", x["instruction"][:50]])
        b = rnd.choice(["r2", "", "\n", "r2 \n"])
        want = prompt_chars._msg_chars(render_messages("rating_v1", task=task_block(ins, inp), response=a))
        assert prompt_chars.rating_chars("rating_v1", ins, inp, a) == want
        want = prompt_chars._msg_chars(render_messages("ranking_v1", task=task_block(ins, inp), output_a=a, output_b=b))
        assert prompt_chars.ranking_chars("ranking_v1", ins, inp, a, b) == want


def test_the_keys_are_looked_up_by_primary_key(tmp_path):
    """The planner's query must not be answered through the status index (a scan per chunk of keys)."""
    from sflib.feedback.store import AnnotationStore

    AnnotationStore(tmp_path / "s.sqlite").close()
    con = sqlite3.connect(tmp_path / "s.sqlite")
    plan = " ".join(str(r) for r in con.execute(
        "EXPLAIN QUERY PLAN SELECT key, status FROM annotations WHERE key IN (?, ?)", ["a", "b"]))
    assert "sqlite_autoindex_annotations_1" in plan and "annotations_status" not in plan


def test_a_second_plan_reuses_the_sizes(tmp_path, monkeypatch):
    from sflib import study
    from sflib.study.planner import plan

    monkeypatch.setenv("SFLIB_OUTPUTS", str(tmp_path / "out"))
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\npolicy:\n  name: local:smollm2\n  k: 3\nfeedback:\n  judge: gpt-4o-mini\n")
    s = study.load(str(spec))
    rows = [{"instruction": f"Say {i}.", "input": "", "response": f"answer {i} {j}"} for i in range(4) for j in range(3)]
    from sflib.core import data as d

    s.save("responses", tables={"responses": d.responses_frame(pd.DataFrame(rows), generator="t")},
           counts={"n": len(rows)}, policy="local:smollm2")
    first = plan(s)
    assert (s.folder / ".plan_sizes.json").exists()
    monkeypatch.setattr(type(s), "read", lambda self, *a, **k: pytest.fail("responses read again"))
    second = plan(study.load(str(spec)))
    pd.testing.assert_frame_equal(first, second)
    row = first.set_index("stage").loc["rankings"]
    assert row["calls"] == 4 * 3 * 2  # 3 pairs per instruction, both orders
    monkeypatch.undo()
    monkeypatch.setenv("SFLIB_OUTPUTS", str(tmp_path / "out"))
    s2 = study.load(str(spec))  # the responses rewritten: the kept sizes no longer apply
    s2.save("responses", tables={"responses": d.responses_frame(pd.DataFrame(rows[:6]), generator="t")},
            counts={"n": 6}, policy="local:smollm2")
    assert plan(s2).set_index("stage").loc["rankings", "calls"] == 2 * 3 * 2


def test_spent_reads_batched_keys_from_an_index(tmp_path):
    from sflib.feedback.store import AnnotationStore

    AnnotationStore(tmp_path / "s.sqlite").close()
    con = sqlite3.connect(tmp_path / "s.sqlite")
    plan = " ".join(str(r) for r in con.execute(
        "EXPLAIN QUERY PLAN SELECT key FROM batch_requests WHERE state = 'done'"))
    assert "COVERING INDEX batch_requests_state" in plan
