"""studies/paper_full.yaml end to end from a pre-populated Hub cache (issue 22).

A temporary HF_HOME holds small files in the released layout of ``hbXNov/sparse_feedback`` (headerless
and header-row CSVs with the original quoting, the rankings-RM train/val JSON); with HF_HUB_OFFLINE=1 and
every socket refused, the real ``huggingface_hub.snapshot_download`` reads them from the cache, the
study's responses / ratings / rankings stages are seeded from them, and consistency on them equals the
original script's rule (the oracle of tests/test_consistency.py).
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from sflib import consistency
from sflib.io import hub
from test_consistency import oracle_from_csv, random_feedback

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "paper_full.yaml"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PROMPT = ("Below is an instruction that describes a task, paired with an input that provides further context. "
          "Write a response that appropriately completes the request.\n\n### Instruction:\n{i}\n\n### Input:\n{x}"
          "\n\n### Response: ")
PROMPT_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
                   "request.\n\n### Instruction:\n{i}\n\n### Response: ")


def seed_cache(home: Path, seed: int = 3, header: bool = False) -> Path:
    """The Hub cache layout (refs/main -> snapshots/<commit>/files) with small files in the released layout."""
    repo = home / "hub" / "datasets--hbXNov--sparse_feedback"
    snap = repo / "snapshots" / COMMIT
    (snap / hub.RM_SPLIT_DIR).mkdir(parents=True)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    ratings, rankings = random_feedback(home, seed)
    for src, name, cols in ((ratings, hub.RATINGS_FILE, ["instruction", "input", "output", "score"]),
                            (rankings, hub.RANKINGS_FILE, ["instruction", "input", "output1", "output2", "feedback"])):
        text = src.read_text(encoding="utf-8")
        if header:  # the Hub files may carry a header row: the readers must take both
            text = ",".join(cols) + "\n" + text
        (snap / name).write_text(text, encoding="utf-8")
    split = {"train": {PROMPT.format(i="Name a colour.", x="sky, \"clear\" day"): {"sentences": [["Blue.", "Red."],
                                                                                                ["Azure.", "Red."]]}},
             "val": {PROMPT_NO_INPUT.format(i="Say hi,\nplease."): {"sentences": [["Hi!", "No."]]}}}
    for part, data in split.items():
        (snap / hub.RM_SPLIT_DIR / f"{part}.json").write_text(json.dumps(data), encoding="utf-8")
    return snap


def go_offline(tmp_path: Path, monkeypatch) -> Path:
    """A temporary HF_HOME (returned), HF_HUB_OFFLINE=1, outputs under tmp_path, every socket refused."""
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SFLIB_OUTPUTS", str(tmp_path / "out"))

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    return home


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    return go_offline(tmp_path, monkeypatch)


@pytest.mark.parametrize("header", [False, True])
def test_paper_full_study_from_the_hub_cache(offline_hub, header):
    from sflib import study

    snap = seed_cache(offline_hub, header=header)
    s = study.load(str(STUDY))
    assert s.config.seeded_from_hub.repo == hub.REPO
    ratings, rankings = s.read("ratings"), s.read("rankings")  # seeded through snapshot_download, offline
    manifest = s.manifest("ratings")
    assert manifest["seeded_from"] == [f"hf://datasets/{hub.REPO}@{COMMIT}/{hub.RATINGS_FILE}"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", consistency.ConsistencyWarning)
        rep = consistency.report(ratings, rankings)
    raw_r, raw_k = offline_hub / "r.csv", offline_hub / "k.csv"  # the oracle reads headerless CSVs
    for src, dst in ((snap / hub.RATINGS_FILE, raw_r), (snap / hub.RANKINGS_FILE, raw_k)):
        lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
        dst.write_text("".join(lines[1:] if header else lines), encoding="utf-8")
    ref = oracle_from_csv(raw_r, raw_k)
    assert rep.matrix.to_numpy().tolist() == ref["matrix"]
    assert rep.consistency == pytest.approx(ref["consistency"], abs=1e-15)
    assert rep.n_skipped_missing_rating == ref["skipped"]
    # every rated and ranked response is in the responses stage
    responses = s.read("responses")
    assert set(ratings["response_id"]) <= set(responses["response_id"])
    assert set(rankings["response_id_1"]) | set(rankings["response_id_2"]) <= set(responses["response_id"])
    split = s.read("rankings", "rm_split")
    assert sorted(split["split"]) == ["train", "train", "val"]
    row = split[split["split"] == "train"].iloc[0]
    assert (row["instruction"], row["input"], row["response1"], row["decision"]) == \
        ("Name a colour.", 'sky, "clear" day', "Blue.", "a")
    assert split[split["split"] == "val"].iloc[0]["input"] == ""


def test_plan_says_what_is_downloaded_and_paid(offline_hub, tmp_path):
    from sflib import study
    from sflib.study.planner import plan

    df = plan(study.load(str(STUDY)))
    notes = dict(zip(df["stage"], df["note"]))
    assert "to download: ~20 MB" in notes["ratings"] and "nothing to pay" in notes["ratings"]
    assert float(df["usd_to_pay"].sum()) == 0
    seed_cache(offline_hub)
    notes = dict(zip(*plan(study.load(str(STUDY)))[["stage", "note"]].to_numpy().T))
    assert "in the Hub cache" in notes["rankings"]


def test_offline_without_the_files_is_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HF_HOME": str(tmp_path / "empty"),
           "HF_HUB_OFFLINE": "1", "SFLIB_OUTPUTS": str(tmp_path / "out")}
    p = subprocess.run([sys.executable, "-m", "sflib", "study", "run", str(STUDY), "--only", "04"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert p.returncode == 1, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "hf download hbXNov/sparse_feedback --repo-type dataset" in lines[0]
    assert str(tmp_path / "empty" / "hub") in lines[0]


def test_split_alpaca_prompt():
    assert hub.split_alpaca_prompt(PROMPT.format(i="a\n\nb", x="c")) == ("a\n\nb", "c")
    assert hub.split_alpaca_prompt(PROMPT_NO_INPUT.format(i="only")) == ("only", "")
    with pytest.raises(ValueError):
        hub.split_alpaca_prompt("no prompt here")
