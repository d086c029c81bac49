"""Findings of stages 00-04 on a tiny hand-made study whose answers are worked out by hand (duplicates,
invalid and failed replies, missing ratings, ties, n = 1), and the study report built from them."""
from __future__ import annotations

import json
import math
import textwrap

import pandas as pd
import pytest

from sflib.core.findings import Estimate, Findings
from sflib.study import load

TINY = """\
name: tiny_findings
seed: 0
budget_usd: 0
instructions:
  paths: [instructions.jsonl]
policy:
  name: local:smollm2
  k: 3
  max_new_tokens: 10
feedback:
  judge: openai:gpt-4o-mini
best_of_n:
  n: 4
  reference: reference.json
  datasets: null
  max_new_tokens: 8
"""


def _resp(i, r, text):
    return {"instruction_id": i, "response_id": r, "instruction": f"Instruction {i}", "input": "", "response": text,
            "finish_reason": "stop"}


@pytest.fixture
def study(tmp_path, monkeypatch):
    """i1 has three responses (r1, r2, r3), i2 one (r4). Ratings: r1 6 then 5 (a conflicting duplicate), r2 6,
    r3 an invalid reply, r4 never rated. Rankings: r1-r2 equal, r1-r3 a, r2-r3 failed."""
    monkeypatch.setenv("SFLIB_OUTPUTS", str(tmp_path / "out"))
    monkeypatch.setenv("SFLIB_FIGURES", str(tmp_path / "shared_figures"))
    (tmp_path / "instructions.jsonl").write_text("\n".join(json.dumps({"instruction": f"Instruction {i}", "input": ""})
                                                           for i in (1, 2)) + "\n")
    (tmp_path / "reference.json").write_text(json.dumps([{"instruction": "Q?", "output": "A", "generator": "ref",
                                                          "dataset": "koala"}]))
    (tmp_path / "tiny.yaml").write_text(textwrap.dedent(TINY))
    s = load(tmp_path / "tiny.yaml")
    responses = pd.DataFrame([_resp("i1", "r1", "one two three"), _resp("i1", "r2", "one two"),
                              _resp("i1", "r3", "one"), _resp("i2", "r4", "")])
    s.save("responses", tables={"responses": responses}, counts={"n": 4, "valid": 4, "invalid": 0, "failed": 0})
    ratings = pd.DataFrame([
        {**_resp("i1", "r1", "one two three"), "score": 6, "valid": True, "status": "ok", "judge": "j"},
        {**_resp("i1", "r1", "one two three"), "score": 5, "valid": True, "status": "ok", "judge": "j"},
        {**_resp("i1", "r2", "one two"), "score": 6, "valid": True, "status": "ok", "judge": "j"},
        {**_resp("i1", "r3", "one"), "score": None, "valid": False, "status": "invalid", "judge": "j"}])
    s.save("ratings", tables={"ratings": ratings}, inputs=["responses"], judge="j",
           counts={"n": 4, "valid": 3, "invalid": 1, "failed": 0, "reasons": {"reply could not be parsed": 1}})
    pair = lambda a, b, dec, ok, status: {"instruction_id": "i1", "response_id_1": a, "response_id_2": b,  # noqa: E731
                                          "instruction": "Instruction i1", "input": "", "response1": a, "response2": b,
                                          "decision": dec, "valid": ok, "status": status, "judge": "j"}
    rankings = pd.DataFrame([pair("r1", "r2", "equal", True, "ok"), pair("r1", "r3", "a", True, "ok"),
                             pair("r2", "r3", None, False, "failed")])
    s.save("rankings", tables={"rankings": rankings}, inputs=["responses"], judge="j",
           counts={"n": 3, "valid": 2, "invalid": 0, "failed": 1, "reasons": {"timeout": 1}})
    return s


def test_01_counts_and_figure_in_the_study_folder(study):
    from sflib.generation.findings import findings

    f = findings(study)
    assert f.counts == {"instructions": 2, "samples": 4, "distinct responses": 4, "empty responses (kept)": 1,
                        "cut at the token limit": 0}
    assert f.estimate("median response length").value == 1.5        # words 3, 2, 1, 0
    cut = [e for e in f.estimates if "limit" in e.name][0]
    assert cut.value == 0 and cut.high > 0                              # 0 of 4, never a zero-width interval
    assert f.figures_folder == study.folder / "figures"                 # a custom study's figures stay in its folder
    saved = f.show("response_lengths")
    assert saved and all(p.parent == study.folder / "figures" for p in saved)


def test_02_one_rule_duplicates_invalid_missing_and_ties(study):
    from sflib.feedback import clean
    from sflib.feedback.findings import ratings_findings

    f = ratings_findings(study)
    assert f.counts == {"responses (distinct, from 01)": 4, "rating rows": 4, "responses rated": 2}
    assert f.exclusions[clean.DUP_OTHER_SCORE] == 1 and f.exclusions[clean.INVALID] == 1
    assert f.exclusions[clean.MISSING_RATING] == 2                      # r3 (invalid only) and r4
    assert f.estimate("mean score").value == 6.0                         # r1's first rating (6) and r2 (6): all equal
    ties = f.estimate("pairs of rated responses with equal scores")
    assert (ties.value, ties.n) == (100.0, 1) and ties.low < 100         # n = 1: Wilson, not 100–100
    assert "4 ratings: 3 valid, 1 invalid" in " ".join(f.notes)
    assert "rating_distribution_by_judge" in f.absent                    # one judge: left out, with the reason


def test_03_pairs_ranked_failed_missing_and_tie_rate(study):
    from sflib.feedback import clean
    from sflib.feedback.findings import rankings_findings

    f = rankings_findings(study)
    assert f.counts["pairs of distinct responses (from 01)"] == 3 and f.counts["pairs ranked"] == 2
    assert f.exclusions[clean.FAILED] == 1 and f.exclusions[clean.MISSING_PAIR] == 1
    tie = f.estimate("equal (tie rate: the two orders disagree)")
    assert (tie.value, tie.n) == (50.0, 2)
    assert "position_bias" in f.absent                                   # no verdicts per order here


def test_04_counts_agree_with_02_and_03_and_n1_is_flagged(study):
    from sflib.consistency.findings import findings
    from sflib.feedback.findings import rankings_findings, ratings_findings

    f = findings(study, bootstrap=200, save=True)
    assert f.counts["responses rated"] == ratings_findings(study).counts["responses rated"] == 2
    assert f.counts["pairs ranked"] == rankings_findings(study).counts["pairs ranked"] == 2
    assert f.counts["pairs compared"] == 1                               # r1-r3: r3 has no valid rating
    assert f.exclusions["ranked pair with a response that has no valid rating"] == 1
    dis = f.estimate("disagreement")
    assert dis.value == 0.0 and dis.n == 1
    assert math.isnan(f.estimate("Cohen's kappa").value)                 # one label on both sides: undefined
    assert any("Only 1 compared pairs" in n for n in f.notes)
    assert study.manifest("consistency")["counts"]["valid"] == 1         # the stage was written
    summary = f.tables["summary"]
    assert summary.loc["duplicate rating rows (first kept)", "value"] == 1   # the stored table's duplicate, not 0


def test_findings_render_markdown_and_html():
    f = Findings("04", "T", counts={"pairs": 3}, exclusions={"a": 2, "b": 0},
                 estimates=[Estimate.share("x", 0, 11), Estimate("k", float("nan"), note="undefined")],
                 tables={"t": pd.DataFrame({"v": ["y" * 500]})}, headline="H", absent={"fig": "no data"})
    md = f.to_markdown()
    assert "H" in md and "a: 2 (0 for each other reason: b)" in md and "x: 0.0% (Wilson 95%: 0.0–25.9%), n = 11" in md
    assert "k: not computed (undefined)" in md and "fig (no data)" in md
    h = f.to_html()
    assert "y" * 299 + "…" in h and "y" * 301 not in h


def test_report_renders_every_stage_and_says_what_is_missing(study, tmp_path):
    from sflib.study.report import write_report

    out = write_report(study, tmp_path / "r.html", bootstrap=100)
    text = out.read_text()
    assert text.startswith("<!doctype html>") and "data:image/png;base64," in text
    assert "<script" not in text and "http://" not in text.replace("https://arxiv.org", "")  # self-contained
    for stage in ("00", "01", "02", "03", "04"):
        assert f"id='stage-{stage}'" in text
    assert "not available" in text                                       # 05-07: not run here (or not in sflib)
    assert "id='stage-09'" in text and "notebook 09 has not run" in text  # 09 says what to run
    assert "60% of cases" in text                                        # the abstract's statement, as a statement


def test_paper_study_headlines(tmp_path, monkeypatch):
    """The headline numbers of the paper study, from the findings (seeded: no notebook needs to run)."""
    monkeypatch.setenv("SFLIB_OUTPUTS", str(tmp_path / "out"))
    from sflib.consistency.findings import findings

    f = findings(load("paper"), bootstrap=200, figures_dir=tmp_path / "fig")
    assert f.counts == {"responses rated": 97, "pairs ranked": 118, "pairs compared": 117}
    assert round(f.estimate("consistency").value, 1) == 56.4 and round(f.estimate("disagreement").value, 1) == 43.6


def test_docs_figures_refreshed_from_the_run_or_named_missing(study, tmp_path):
    from sflib.study.report import copy_docs_figures

    docs = tmp_path / "docs_figures"
    docs.mkdir()
    (docs / "01_response_lengths.png").write_bytes(b"old")
    (docs / "07_winrates.png").write_bytes(b"old")
    from sflib.generation.findings import findings

    findings(study).show("response_lengths")
    with pytest.raises(FileNotFoundError, match="07_winrates.png"):
        copy_docs_figures(study, docs)
    assert (docs / "01_response_lengths.png").read_bytes().startswith(b"\x89PNG")   # refreshed from this run
    assert (docs / "07_winrates.png").read_bytes() == b"old"


def test_paper_figures_shared_custom_figures_in_the_study_folder(study, tmp_path, monkeypatch):
    from sflib.plots import study_figures_dir

    monkeypatch.setenv("SFLIB_FIGURES", str(tmp_path / "shared"))
    assert study_figures_dir(load("paper")) == tmp_path / "shared"
    assert study_figures_dir(study) == study.folder / "figures"
    assert study_figures_dir(study, tmp_path / "x") == tmp_path / "x"


def test_00_cost_plan_lists_what_the_seeded_evaluation_holds_not_553_x_7_calls(tmp_path, monkeypatch):
    monkeypatch.setenv("SFLIB_OUTPUTS", str(tmp_path / "out"))
    from sflib.study.planner import plan
    from sflib.study.seed import SEED_TABLES, canonical

    row = plan(load("paper")).set_index("stage").loc["evaluation"]
    recorded = sum(len(canonical(t)) for t in SEED_TABLES["evaluation"].values())
    assert row["calls"] == 0 and row["usd"] == 0 and f"{recorded:,} recorded judgments" in row["note"]


def test_01_says_how_many_torch_threads_a_local_policy_sampled_with(study, monkeypatch):
    """Issue 22: notebook 01 says how many torch threads a local policy ran with (recorded by the stage)."""
    from sflib.generation.findings import findings
    from sflib.study import acquire

    monkeypatch.setattr(acquire, "generate_responses", lambda s, instr, **kw: study.read("responses"))
    monkeypatch.setattr("sflib.core.threads.available_cores", lambda: 3)
    _, _, counts = acquire.sample_responses(study)  # the study's policy is local:smollm2
    assert counts["torch_threads"] == 3
    study.save("responses", tables={"responses": study.read("responses")}, counts=counts)
    assert any(n.startswith("Sampled on this machine with 3 torch threads (the cores this process may use: ")
               for n in findings(study).notes)
