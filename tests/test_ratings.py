"""rate(): prompts, parsing, invalid replies kept, caching/resume through the real store, CLI."""
import json
from pathlib import Path

import pandas as pd
import pytest

from sflib.core import data as d
from sflib import io as sfio
from sflib.judges.base import Completion, Judge, Request
from sflib.feedback.ratings import RATING_RECORD_COLUMNS, rate, rating_request, task_block, valid_ratings
from sflib.feedback.store import AnnotationStore

ROOT = Path(__file__).resolve().parents[1]
ORIGINAL = ROOT / "data" / "original" / "alpaca_generation"


class FakeJudge(Judge):
    """Deterministic in-process judge: the reply is looked up from the response text."""

    name = "fake:rater"
    model = "fake"
    params = {"temperature": 0}

    def __init__(self, replies):
        self.replies = replies  # response text -> reply (None = failure)
        self.asked: list[Request] = []

    def complete(self, requests):
        for i, r in enumerate(requests):
            self.asked.append(r)
            reply = self.replies(r.meta["response"]) if callable(self.replies) else self.replies[r.meta["response"]]
            if reply is None:
                yield i, Completion(error="HTTP 500 from fake")
            else:
                yield i, Completion(text=reply, prompt_tokens=100, completion_tokens=5, latency_s=0.01)


def _responses():
    return pd.DataFrame({
        "instruction": ["Add the numbers.", "Add the numbers.", "Name a colour.", "Name a colour."],
        "input": ["2 and 3", "2 and 3", "", float("nan")],
        "response": ["5", "6", "Blue", "I like trains"],
        "source": ["math", "math", "misc", "misc"],
    })


REPLIES = {"5": "Score: 7\nCorrect.", "6": "The sum is wrong. Score: 2", "Blue": "Blue is a colour. Rating: 6/7",
           "I like trains": "I am not sure what to say."}


def test_prompt_follows_the_protocol():
    req = rating_request("Translate the text.", "Hallo Welt", "Hello world")
    system, user = (m["content"] for m in req.messages)
    assert "1 to 7" in system + user
    for word in ("accuracy", "coherence", "harmlessness", "perfect", "harmful", "Score:"):
        assert word in user
    assert "### Instruction:\nTranslate the text.\n\n### Input:\nHallo Welt" in user
    assert user.rstrip().endswith("Hello world")
    assert req.meta == {"kind": "rating", "instruction": "Translate the text.", "input": "Hallo Welt",
                        "response": "Hello world"}
    # empty input: no input section for the task (the few-shot examples have their own)
    assert "### Input:" not in task_block("Name a colour.", float("nan"))


def test_rate_keeps_invalid_and_failed_rows(tmp_path):
    replies = dict(REPLIES, **{"I like trains": None})
    judge = FakeJudge(replies)
    out = rate(_responses(), judge, store=tmp_path / "s.sqlite", progress=False)
    assert list(out.columns[: len(d.RATING_COLUMNS) + len(RATING_RECORD_COLUMNS)]) == d.RATING_COLUMNS + RATING_RECORD_COLUMNS
    assert "source" in out.columns  # extra columns are carried
    assert out["score"].tolist()[:3] == [7, 2, 6]
    assert out["status"].tolist() == ["ok", "ok", "ok", "failed"]
    assert pd.isna(out["score"].iloc[3]) and not out["valid"].iloc[3] and "HTTP 500" in out["error"].iloc[3]
    assert out["judge"].unique().tolist() == ["fake:rater"]
    assert out["template_version"].unique().tolist() == ["rating-v1"]
    assert out.attrs["stats"]["failed"] == 1 and out.attrs["stats"]["called"] == 4


def test_invalid_kept_rerun_free_retry_invalid_reasks_only_invalid(tmp_path):
    store = AnnotationStore(tmp_path / "s.sqlite")
    judge = FakeJudge(REPLIES)
    first = rate(_responses(), judge, store=store, progress=False)
    assert first["valid"].tolist() == [True, True, True, False]
    assert first["status"].iloc[3] == "invalid" and first["raw"].iloc[3] == "I am not sure what to say."
    assert pd.isna(first["score"].iloc[3])
    assert len(judge.asked) == 4 and first["prompt_tokens"].sum() == 400

    second = rate(_responses(), judge, store=store, progress=False)
    assert len(judge.asked) == 4, "a re-run must not call the judge"
    assert second["cached"].all() and second.attrs["stats"]["called"] == 0
    pd.testing.assert_series_equal(first["score"], second["score"])

    judge.replies = dict(REPLIES, **{"I like trains": "Score: 1"})
    third = rate(_responses(), judge, store=store, retry_invalid=True, progress=False)
    assert [r.meta["response"] for r in judge.asked[4:]] == ["I like trains"]
    assert third["score"].tolist() == [7, 2, 6, 1] and third["valid"].all()
    assert third["cached"].tolist() == [True, True, True, False]


def test_repeated_response_is_its_own_annotation(tmp_path):
    df = pd.DataFrame({"instruction": ["Say hi."] * 3, "input": [""] * 3, "response": ["hi", "hi", "hello"]})
    judge = FakeJudge(lambda text: "Score: 4")
    out = rate(df, judge, store=False, progress=False)
    assert len(judge.asked) == 3 and out["score"].tolist() == [4, 4, 4]
    assert [r.meta.get("repeat", 0) for r in judge.asked] == [0, 1, 0]


def test_rate_rejects_missing_columns():
    with pytest.raises(ValueError, match="response"):
        rate(pd.DataFrame({"instruction": ["x"]}), FakeJudge({}), store=False, progress=False)


def _run_cli(capsys, *args):
    """Run ``python -m sflib ...`` in-process (same parser and error handling as the command line)."""
    from sflib.cli import main

    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_rate_end_to_end(tmp_path, capsys):
    # a two-instruction slice of the vendored sample, rated by the recorded GPT-3.5 judge
    gens = json.loads((ORIGINAL / "sample_generation.json").read_text())[:4]
    (tmp_path / "gen.json").write_text(json.dumps(gens))
    judge = f"recorded:{ORIGINAL / 'feedback_ratings_sample_generation.csv'}"
    # one of the 20 was never recorded: the run is incomplete, so it exits non-zero with the reason and
    # writes the partial result beside the output, not over it
    code, out, err = _run_cli(capsys, "rate", "--judge", judge, "--input", str(tmp_path / "gen.json"), "--output",
                              str(tmp_path / "ratings.jsonl"), "--store", str(tmp_path / "s.sqlite"), "--quiet")
    assert code == 3, err
    assert "1 failed (no recorded rating for instruction" in err and "--allow-partial" in err
    assert not (tmp_path / "ratings.jsonl").exists() and (tmp_path / "ratings.partial.jsonl").exists()
    code, out, err = _run_cli(capsys, "rate", "--judge", judge, "--input", str(tmp_path / "gen.json"), "--output",
                              str(tmp_path / "ratings.jsonl"), "--store", str(tmp_path / "s.sqlite"), "--quiet",
                              "--allow-partial")
    assert code == 0, err
    assert "n=20" in out and "ok" in out and "$0.0000" in out and "incomplete: 20 rows, 1 failed" in err
    table = sfio.read_table(tmp_path / "ratings.jsonl", required=d.RATING_COLUMNS + ["valid", "status", "raw"])
    recorded = sfio.read_ratings(ORIGINAL / "feedback_ratings_sample_generation.csv")
    merged = table.merge(recorded.drop_duplicates("response_id"), on="response_id", suffixes=("", "_rec"))
    assert len(merged) >= 18 and (merged["score"] == merged["score_rec"]).all()
    # the original headerless layout, valid rows only
    code, out, err = _run_cli(capsys, "rate", "--judge", judge, "--input", str(tmp_path / "gen.json"), "--output",
                              str(tmp_path / "ratings.csv"), "--no-store", "--quiet", "--allow-partial")
    assert code == 0, err
    back = sfio.read_ratings(tmp_path / "ratings.csv")
    assert len(back) == int(table["valid"].sum())
    # a bad input file is a one-line error, not a traceback
    (tmp_path / "bad.json").write_text("{not json")
    code, out, err = _run_cli(capsys, "rate", "--judge", judge, "--input", str(tmp_path / "bad.json"), "--output",
                              str(tmp_path / "x.jsonl"), "--no-store")
    assert code == 1 and "bad.json" in err


def test_rate_through_openai_judge_against_fake_server(tmp_path):
    fake_openai = pytest.importorskip("fake_openai")
    from sflib.judges import get_judge

    with fake_openai.FakeOpenAI(latency=0.0) as server:
        judge = get_judge("openai:gpt-4o-mini", base_url=server.url, api_key="sk-test-not-a-secret")
        out = rate(_responses(), judge, store=tmp_path / "s.sqlite", progress=False)
        assert out["valid"].all() and out["score"].between(1, 7).all()
        assert out["raw"].str.startswith("Score:").all()
        assert out.attrs["stats"]["prompt_tokens"] > 0 and out.attrs["stats"]["cost_usd"] > 0
        n = server.requests
        again = rate(_responses(), judge, store=tmp_path / "s.sqlite", progress=False)
        assert server.requests == n and again["cached"].all()
    with AnnotationStore(tmp_path / "s.sqlite") as store:
        assert "sk-test-not-a-secret" not in json.dumps(store.to_frame().astype(str).to_dict("records"))


def test_cli_rate_empty_list_is_one_error_naming_the_file(tmp_path, capsys):
    (tmp_path / "empty.json").write_text("[]")
    code, out, err = _run_cli(capsys, "rate", "--judge", "recorded", "--input", str(tmp_path / "empty.json"),
                              "--output", str(tmp_path / "r.jsonl"), "--no-store")
    assert code == 1 and "empty.json" in err and "no responses" in err and "Traceback" not in err
    assert not (tmp_path / "r.jsonl").exists()


def test_cli_rate_reads_alpaca_outputs_json_and_limit(tmp_path, capsys):
    rows = [{"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
            {"instruction": "Name a colour.", "input": "", "output": "Blue"}]
    (tmp_path / "alpaca.json").write_text(json.dumps(rows))
    recorded = pd.DataFrame({"instruction": ["Add the numbers.", "Name a colour."], "input": ["2 and 3", ""],
                             "response": ["5", "Blue"], "score": [7, 6]})
    sfio.write_table(recorded, tmp_path / "rec.jsonl")
    code, out, err = _run_cli(capsys, "rate", "--judge", f"recorded:{tmp_path / 'rec.jsonl'}", "--input",
                              str(tmp_path / "alpaca.json"), "--output", str(tmp_path / "r.jsonl"), "--no-store",
                              "--quiet", "--limit", "1")
    assert code == 0, err
    table = sfio.read_table(tmp_path / "r.jsonl")
    assert table["response"].tolist() == ["5"] and table["score"].tolist() == [7]


# ----------------------------------------------------------------------------- valid ratings, each response once

def test_valid_ratings_count_each_response_once_first_valid_rating_wins():
    df = pd.DataFrame({
        "response_id": ["r1", "r2", "r1", "r3", "r3", "r4", "r2"],
        "score": [6, None, 5, "x", 4, 7, 3],
        "valid": [True, False, True, True, True, True, True],
    })
    kept, counts = valid_ratings(df)
    # r2's invalid first row does not hide its later valid one; r3's unparsable score is not a rating
    assert kept["response_id"].tolist() == ["r1", "r3", "r4", "r2"]
    assert kept["score"].tolist() == [6, 4, 7, 3]
    assert counts == {"rows": 7, "without_score": 2, "duplicates": 1, "conflicting": 1, "used": 4}
    # the same response rated twice with the same score is a duplicate, not a conflict
    same = pd.DataFrame({"response_id": ["r1", "r1"], "score": [5, 5]})
    assert valid_ratings(same)[1] == {"rows": 2, "without_score": 0, "duplicates": 1, "conflicting": 0, "used": 1}


def test_valid_ratings_keep_every_judge_and_fall_back_to_the_text():
    two_judges = pd.DataFrame({"response_id": ["r1", "r1", "r1"], "judge": ["j1", "j2", "j1"], "score": [6, 2, 5]})
    kept, counts = valid_ratings(two_judges)
    assert kept["judge"].tolist() == ["j1", "j2"] and counts["duplicates"] == 1
    by_text = pd.DataFrame({"instruction": ["Add.", "Add.", "Add."], "input": [None, "", "1 2"],
                            "response": ["3", "3", "3"], "score": [4, 5, 6]})
    kept, counts = valid_ratings(by_text)  # None and "" are the same (empty) input
    assert kept["score"].tolist() == [4, 6] and counts["conflicting"] == 1
    assert valid_ratings(by_text[["score"]])[1]["used"] == 3  # nothing to identify a response by: no dedup
    empty = valid_ratings(pd.DataFrame(columns=["response_id", "score", "valid"]))
    assert len(empty[0]) == 0 and empty[1]["used"] == 0


def test_vendored_ratings_duplicates_are_those_consistency_drops():
    """The paper's released ratings rate two responses twice (6 then 5, 5 then 4); valid_ratings drops the
    same rows as the consistency comparison, so notebooks 02 and 04 count the same ratings."""
    from sflib.consistency import ConsistencyWarning, compare
    from sflib.study.seed import canonical

    ratings, rankings = canonical("sample_ratings"), canonical("sample_rankings")
    kept, counts = valid_ratings(ratings)
    with pytest.warns(ConsistencyWarning, match="no rating"):  # the one response the paper's run never rated
        stats = compare(ratings, rankings).attrs["counts"]
    assert counts["duplicates"] == stats["n_duplicate_ratings"] == 2
    assert counts["conflicting"] == stats["n_conflicting_duplicate_ratings"] == 2
    assert counts["used"] == ratings["response_id"].nunique() == len(ratings) - 2
    first = ratings.drop_duplicates("response_id").set_index("response_id")["score"]
    assert kept.set_index("response_id")["score"].equals(first.astype(int))
