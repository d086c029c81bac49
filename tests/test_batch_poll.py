"""Batch polling that starts short and backs off, ``--poll``, and the judge's effective rate limit
printed at the start of a run (issue 22)."""
from __future__ import annotations

import json
import time
import types

import pytest

from sflib.feedback.annotate import annotate
from sflib.feedback.parsing import parse_score
from sflib.feedback.store import AnnotationStore
from sflib.judges import batch as batch_mod
from sflib.judges.base import Request
from sflib.judges.openai_judge import OpenAIJudge


def test_default_waits_start_short_and_back_off():
    waits = batch_mod.poll_waits()
    assert [next(waits) for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    fixed = batch_mod.poll_waits(5)
    assert [next(fixed) for _ in range(3)] == [5, 5, 5]


def test_a_job_done_in_seconds_is_collected_after_short_polls(fake_openai_factory, tmp_path, monkeypatch):
    server = fake_openai_factory(batch_delay=0.3)
    slept = []
    real = time.sleep
    shim = types.SimpleNamespace(time=time.time, monotonic=time.monotonic,
                                 sleep=lambda s: (slept.append(s), real(min(s, 0.2))))
    monkeypatch.setattr(batch_mod, "time", shim)
    judge = OpenAIJudge("gpt-4o-mini", base_url=server.url, api_key="sk-test", timeout=5)
    reqs = [Request([{"role": "user", "content": f"Rate the response on a scale of 1 to 7. Item {i}"}]) for i in range(5)]
    df = annotate(judge, reqs, store=AnnotationStore(tmp_path / "s.sqlite"), template_version="v1",
                  parse=parse_score, progress=False, mode="batch")
    assert (df["status"] == "ok").all()
    polls = [s for s in slept if s >= 1]
    assert polls and polls == [1, 2, 4, 8, 16][:len(polls)]  # never the old fixed 30 s first


def test_batch_poll_must_be_positive():
    with pytest.raises(ValueError, match="poll_s"):
        batch_mod.BatchRun(None, {}, None, None, "v1", client=object(), poll_s=0)


def test_cli_prints_the_rate_limit_and_takes_poll(fake_openai_factory, tmp_path, monkeypatch, capsys):
    from sflib.cli import main

    server = fake_openai_factory()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    judge = tmp_path / "judges" / "x.yaml"
    judge.parent.mkdir()
    judge.write_text(f"provider: openai\nmodel: gpt-4o-mini\nbase_url: {server.url}\nrpm: 500\nconcurrency: 4\n")
    monkeypatch.chdir(tmp_path)
    rows = [{"instruction": f"Say {i}.", "input": "", "response": f"{i}"} for i in range(4)]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    capsys.readouterr()
    code = main(["rate", "--judge", "judges/x.yaml", "--input", "r.jsonl", "--output", "out.jsonl", "--store",
                 "s.sqlite", "--mode", "batch", "--poll", "0.05", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "rpm 500 from judges/x.yaml" in err and "concurrency 4 from judges/x.yaml" in err
    assert "tpm none" in err
    code = main(["rate", "--judge", "judges/x.yaml", "--input", "r.jsonl", "--output", "out2.jsonl", "--store",
                 "s2.sqlite", "--rpm", "60", "--quiet"])
    assert code == 0 and "rpm 60 from --rpm" in capsys.readouterr().err
