"""Stage 05 on the paper's released reward-model split (issue 22).

``studies/paper_full.yaml`` seeds the rankings stage from the Hub with the released train/val pairs of the
rankings RM (table ``rm_split``). Stage 05 then trains the rankings RM on exactly the released train pairs,
evaluates it on exactly the val pairs, and holds out the instructions of the val pairs for the ratings RM
too; ``load`` rebuilds the same split, and the manifest, metrics.json and the findings say which split was
used and how many torch threads trained. A split with an empty part, or pairs that are not among the
rankings, stops before training with one line naming the table. Every other study (the paper sample
study included) keeps its seeded split by instruction.

The fake Hub cache is tests/test_hub_study.py's (a temporary HF_HOME, HF_HUB_OFFLINE=1, no network).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sflib.core import threads
from sflib.core.data import DataError
from sflib.io import hub
from sflib.rm import stage
from sflib.rm.objectives import instruction_ids, split_by_instruction, validation_instructions
from test_hub_study import PROMPT, PROMPT_NO_INPUT, STUDY, go_offline, seed_cache


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    return go_offline(tmp_path, monkeypatch)


def _prompt(instruction: str, input: str) -> str:
    return PROMPT.format(i=instruction, x=input) if input else PROMPT_NO_INPUT.format(i=instruction)


def write_split(snap: Path, parts: dict[str, pd.DataFrame]) -> None:
    """Replace the released train/val files by ``parts`` (canonical ranking rows, preferred response first)."""
    folder = snap / hub.RM_SPLIT_DIR
    for old in folder.glob("*.json"):
        old.unlink()
    for part, rows in parts.items():
        data: dict = {}
        for r in rows.itertuples():
            data.setdefault(_prompt(r.instruction, r.input), {"sentences": []})["sentences"].append(
                [r.response1, r.response2])
        (folder / f"{part}.json").write_text(json.dumps(data), encoding="utf-8")


def released_from_rankings(snap: Path) -> dict:
    """A released split made of the seeded rankings' pairs with a preference (one row per pair, preferred
    first): every third instruction in val, one instruction in neither file, the rest in train."""
    rk = hub.read_rankings(snap)
    rk = rk[rk["decision"].isin(["a", "b"])].copy()
    rk["pair"] = [frozenset(p) for p in zip(rk["response_id_1"], rk["response_id_2"])]
    rk = rk.drop_duplicates(["instruction_id", "pair"])
    b = rk["decision"] == "b"
    pref = rk.assign(response1=rk["response2"].where(b, rk["response1"]), response2=rk["response1"].where(b, rk["response2"]),
                     response_id_1=rk["response_id_2"].where(b, rk["response_id_1"]),
                     response_id_2=rk["response_id_1"].where(b, rk["response_id_2"]), decision="a")
    ids = sorted(set(pref["instruction_id"]))
    assert len(ids) >= 4, "the seeded rankings need a few instructions"
    val_ids, neither = set(ids[::3]), ids[1]
    parts = {"train": pref[~pref["instruction_id"].isin(val_ids | {neither})],
             "val": pref[pref["instruction_id"].isin(val_ids)]}
    write_split(snap, parts)
    return {"parts": parts, "val_ids": val_ids, "neither": neither}


def _keys(df: pd.DataFrame) -> list[tuple]:
    return sorted(zip(df["instruction_id"], df["response_id_1"], df["response_id_2"]))


def test_stage_05_trains_on_the_released_split(offline_hub):
    from sflib import study
    from sflib.feedback.clean import clean_rankings
    from sflib.rm import findings

    snap = seed_cache(offline_hub)
    made = released_from_rankings(snap)
    train, val = made["parts"]["train"], made["parts"]["val"]
    s = study.load(str(STUDY))
    run = stage.run(s, quick=True)
    assert s.manifest("rankings")["tables"]["rm_split"] == len(train) + len(val)

    # the rankings RM: exactly the released train pairs, evaluated on exactly the val pairs
    assert run.split["kind"] == "released"
    assert (run.split["train_pairs"], run.split["val_pairs"]) == (len(train), len(val))
    assert _keys(run.splits["rankings"][0]) == _keys(train)
    assert _keys(run.splits["rankings"][1]) == _keys(val)
    assert set(run.splits["rankings"][1]["decision"]) == {"a"}
    counts = run.runs["rankings"]["counts"]
    assert counts["train"]["used"] == len(train) and counts["eval"]["used"] == len(val)
    assert int(run.held_out.loc["rankings RM", "n_pairs"]) == len(val)
    # the ratings RM: the same held-out instructions (those of the val pairs); the rest train it
    assert run.val_ids == made["val_ids"]
    rated_train, rated_held = run.splits["ratings"]
    assert set(instruction_ids(rated_held)) == made["val_ids"] & set(instruction_ids(run.ratings_kept))
    assert not set(instruction_ids(rated_train)) & made["val_ids"]
    assert len(rated_train) + len(rated_held) == len(run.ratings_kept)
    if made["neither"] in set(instruction_ids(run.ratings_kept)):   # in neither file: the ratings RM trains on it
        assert made["neither"] in set(instruction_ids(rated_train))

    # the manifest and metrics.json say which split, and the ranked pairs it leaves out
    kept, _ = clean_rankings(s.read("rankings"))
    usable = kept[kept["decision"].isin(["a", "b"])]
    left_out = int((usable["instruction_id"] == made["neither"]).sum())
    assert left_out > 0 and run.split["not_in_split"] == left_out
    m = s.manifest("reward_models")
    assert m["counts"]["split"] == f"the released train/val split: {len(train)} / {len(val)} pairs"
    assert m["counts"]["reasons"][stage.NOT_IN_SPLIT] == left_out
    metrics = json.loads(s.path_of("reward_models", "metrics.json").read_text(encoding="utf-8"))
    assert metrics["split"]["kind"] == "released" and metrics["split"]["val_pairs"] == len(val)
    assert metrics["held_out_instructions"] == len(made["val_ids"])
    assert metrics["torch_threads"] == run.torch_threads == threads.available_cores()

    # the findings say it (notebook 05 shows them)
    f = findings.findings(s, run, quick=True)
    assert f.notes[0].startswith(f"Split: the released train/val split: {len(train)} / {len(val)} pairs")
    assert f.counts["torch threads"] == threads.available_cores()
    assert f.counts["released split: val pairs"] == len(val)
    text = f.to_markdown()
    assert f"- torch threads: {threads.available_cores()}" in text and "Split: the released train/val split" in text

    # load() rebuilds the same split, nothing trained
    back = stage.load(s)
    assert back.val_ids == run.val_ids and back.split == run.split and back.torch_threads == run.torch_threads
    for kind in ("ratings", "rankings"):
        for a, b in zip(back.splits[kind], run.splits[kind]):
            pd.testing.assert_frame_equal(a, b)
    assert findings.findings(s, quick=True).notes[0] == f.notes[0]


def test_a_split_not_about_the_rankings_is_one_line(offline_hub):
    from sflib import study

    seed_cache(offline_hub)  # its released pairs ("Name a colour.") are not among the random rankings
    s = study.load(str(STUDY))
    with pytest.raises(DataError) as e:
        stage.run(s, quick=True)
    msg = str(e.value)
    assert "table rm_split of the rankings stage" in msg and "do not occur among the rankings stage's" in msg
    assert "3 of the 3 pairs" in msg and "rm_split.jsonl" in msg and "\n" not in msg
    assert s.manifest("reward_models") is None   # stopped before training: nothing written


@pytest.mark.parametrize("missing", ["val", "train"])
def test_a_split_with_an_empty_part_is_one_line(offline_hub, missing):
    from sflib import study

    snap = seed_cache(offline_hub)
    parts = released_from_rankings(snap)["parts"]
    write_split(snap, {k: v for k, v in parts.items() if k != missing})
    s = study.load(str(STUDY))
    with pytest.raises(DataError, match=f"table rm_split of the rankings stage\\) has no {missing} pairs"):
        stage.run(s, quick=True)
    assert s.manifest("reward_models") is None


def test_bad_split_values_are_named():
    from sflib.rm.objectives import released_split

    rows = pd.DataFrame({"instruction": ["i", "i"], "input": "", "response1": ["a", "b"], "response2": ["c", "d"],
                         "decision": "a", "split": ["train", "test"]})
    with pytest.raises(DataError, match="row 2, field 'split'.*'test' is neither 'train' nor 'val'"):
        released_split(rows, rows.drop(columns="split"), path="rm_split.jsonl")
    with pytest.raises(DataError, match="lacks column\\(s\\) split"):
        released_split(rows.drop(columns="split"), rows, path="rm_split.jsonl")
    ok = rows.assign(split=["train", "val"])
    train, val, info = released_split(ok, ok.drop(columns="split").iloc[::-1])  # either order of a pair counts
    assert (len(train), len(val), info["not_in_split"]) == (1, 1, 0) and "split" not in train


def test_a_few_released_pairs_missing_from_the_rankings_are_kept_and_counted():
    """Texts that differ slightly (quoting, whitespace) must not stop 05: only a split of which no pair is among
    the rankings is refused; the others train as released and are counted."""
    from sflib.rm.objectives import released_split

    rows = pd.DataFrame({"instruction": ["i", "i", "j"], "input": "", "response1": ["a", "b", "x"],
                         "response2": ["c", "d", "y"], "decision": "a", "split": ["train", "val", "train"]})
    rankings = rows.drop(columns="split").iloc[:2]  # the pair of instruction j is not among them
    train, val, info = released_split(rows, rankings)
    assert (len(train), len(val), info["not_in_rankings"]) == (2, 1, 1)
    assert list(train["response1"]) == ["a", "x"]  # kept as released
    only_j = pd.concat([rows.iloc[[2]], rows.iloc[[2]].assign(split="val")])  # no pair among the rankings
    with pytest.raises(DataError, match="2 of the 2 pairs .* do not occur among"):
        released_split(only_j, rankings)


def test_other_studies_keep_their_seeded_split(tmp_path, monkeypatch):
    """The paper sample study (./run_all.sh) has no rm_split: the split is the seeded one, as before."""
    from sflib import study

    monkeypatch.setenv("SFLIB_OUTPUTS", str(tmp_path / "out"))
    s = study.load("paper")
    kept, _ = stage._clean(s.read("ratings"))
    rankings, _ = stage._clean_rankings(s.read("rankings"))
    assert "rm_split" not in s.manifest("rankings")["tables"]
    val_ids, splits, info = stage._split(s, kept, rankings)
    cfg = s.config.reward_models
    ids = pd.concat([instruction_ids(kept), instruction_ids(rankings)])
    assert val_ids == validation_instructions(ids, cfg.val_fraction, s.config.seed) and len(val_ids) > 0
    for kind, df in (("ratings", kept), ("rankings", rankings)):
        for a, b in zip(splits[kind], split_by_instruction(df, val_ids=val_ids)):
            pd.testing.assert_frame_equal(a, b)
    assert info["kind"] == "seeded"
    assert info["description"] == f"a seeded split by instruction, val_fraction {cfg.val_fraction:g} (seed {s.config.seed})"
    assert info["held_out_instructions"] == len(val_ids)
