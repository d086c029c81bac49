"""rank(): both-order decisions, invalid/failed orders kept, position bias, caching, pairs, CLI."""
import math

import numpy as np
import pandas as pd
import pytest

from sflib.core import data as d
from sflib import io as sfio
from sflib.judges.base import Completion, Judge
from sflib.feedback.rankings import (RANKING_RECORD_COLUMNS, combine_verdicts, make_pairs, position_bias, rank,
                            ranking_request)
from sflib.feedback.store import AnnotationStore


class ChoiceJudge(Judge):
    """Deterministic judge: ``policy(first_shown, second_shown) -> reply text or None (failure)``."""

    name = "fake:ranker"
    model = "fake"

    def __init__(self, policy):
        self.policy = policy
        self.calls = 0

    def complete(self, requests):
        for i, r in enumerate(requests):
            self.calls += 1
            m = r.meta
            first, second = (m["response1"], m["response2"]) if m["order"] == "12" else (m["response2"], m["response1"])
            reply = self.policy(first, second)
            yield i, (Completion(error="timeout") if reply is None
                      else Completion(text=reply, prompt_tokens=50, completion_tokens=3))


def longer_wins(first, second):
    return "Output (a)" if len(first) > len(second) else "Output (b)"


def _pairs():
    return pd.DataFrame({
        "instruction": ["Explain rain."] * 3,
        "input": [""] * 3,
        "response1": ["Water falls from clouds when droplets grow heavy.", "Rain.", "Clouds."],
        "response2": ["Rain.", "Water falls from clouds when droplets grow heavy.", "Sky water"],
    })


@pytest.mark.parametrize("v12,v21,expected", [
    ("a", "b", "a"), ("b", "a", "b"), ("a", "a", "equal"), ("b", "b", "equal"),
    (None, "a", None), ("a", float("nan"), None), (np.nan, np.nan, None),
])
def test_combine_verdicts(v12, v21, expected):
    got = combine_verdicts(v12, v21)
    assert (got is np.nan or (isinstance(got, float) and math.isnan(got))) if expected is None else got == expected


def test_prompt_shows_both_outputs_in_the_asked_order():
    r12 = ranking_request("Explain rain.", "", "FIRST", "SECOND", "12")
    r21 = ranking_request("Explain rain.", "", "FIRST", "SECOND", "21")
    u12, u21 = r12.messages[-1]["content"], r21.messages[-1]["content"]
    tail12 = u12[u12.rindex("Now compare"):]
    tail21 = u21[u21.rindex("Now compare"):]
    assert tail12.index("FIRST") < tail12.index("SECOND") and tail21.index("SECOND") < tail21.index("FIRST")
    assert "### Output (a):" in tail12 and "### Output (b):" in tail12 and "### Input:" not in tail12
    for word in ("accuracy", "coherence", "harmlessness"):
        assert word in u12
    assert r21.meta["order"] == "21" and r21.meta["response1"] == "FIRST"
    with pytest.raises(ValueError):
        ranking_request("x", "", "a", "b", "ba")


def test_consistent_judge_gives_a_and_b():
    out = rank(_pairs(), ChoiceJudge(longer_wins), store=False, progress=False)
    assert list(out.columns[: len(d.RANKING_COLUMNS) + len(RANKING_RECORD_COLUMNS)]) == d.RANKING_COLUMNS + RANKING_RECORD_COLUMNS
    assert out["decision"].tolist() == ["a", "b", "b"]
    assert out["verdict_12"].tolist() == ["a", "b", "b"] and out["verdict_21"].tolist() == ["b", "a", "a"]
    assert out["valid"].all() and (out["status"] == "ok").all()
    assert out["prompt_tokens"].tolist() == [100, 100, 100]
    assert out.attrs["stats"]["requests"] == 6 and out.attrs["stats"]["pairs"] == 3
    pb = position_bias(out)
    assert pb["pairs"] == 3 and pb["disagreement_rate"] == 0 and pb["agree"] == 3
    assert pb["first_pick_rate_12"] == pytest.approx(1 / 3) and pb["first_pick_rate_21"] == pytest.approx(2 / 3)
    assert pb["first_pick_rate"] == pytest.approx(0.5)


def test_position_biased_judge_gives_equal_and_bias_numbers():
    always_first = ChoiceJudge(lambda first, second: "Output (a)\nThe first one is better.")
    out = rank(_pairs(), always_first, store=False, progress=False)
    assert out["decision"].tolist() == ["equal"] * 3
    pb = position_bias(out)
    assert pb == {"pairs": 3, "first_pick_rate_12": 1.0, "first_pick_rate_21": 1.0, "first_pick_rate": 1.0,
                  "disagreement_rate": 1.0, "first_first": 3, "second_second": 0, "agree": 0}
    # mixed: prefers the second output only when the first is "Rain."
    mixed = ChoiceJudge(lambda first, second: "Output (b)" if first == "Rain." else "Output (a)")
    pb = position_bias(rank(_pairs(), mixed, store=False, progress=False))
    # pair 1: 12 -> a, 21 (Rain. first) -> b: agree on response1; pair 2: 12 (Rain. first) -> b, 21 -> a
    # agree on response2; pair 3: a, a: disagree
    assert (pb["agree"], pb["first_first"], pb["disagreement_rate"]) == (2, 1, pytest.approx(1 / 3))


def test_invalid_or_failed_order_keeps_the_row_without_decision(tmp_path):
    def policy(first, second):
        if first == "Sky water":
            return None  # order 21 of pair 3 fails
        if first == "Rain." and second.startswith("Water"):
            return "Both are fine really."  # order 21 of pair 1 / order 12 of pair 2 unparsable
        return longer_wins(first, second)

    store = AnnotationStore(tmp_path / "s.sqlite")
    judge = ChoiceJudge(policy)
    out = rank(_pairs(), judge, store=store, progress=False)
    assert len(out) == 3 and out["decision"].isna().all() and not out["valid"].any()
    assert out["status"].tolist() == ["invalid", "invalid", "failed"]
    assert out["raw_21"].iloc[0] == "Both are fine really." and out["verdict_12"].iloc[0] == "a"
    assert "order 21: timeout" in out["error"].iloc[2]
    assert position_bias(out)["pairs"] == 0
    # re-run: the failure is retried, stored invalid replies are not (5 of 6 answers cached)
    calls = judge.calls
    judge.policy = longer_wins
    again = rank(_pairs(), judge, store=store, progress=False)
    assert judge.calls - calls == 1
    assert again["decision"].tolist()[2] == "b" and again["decision"].iloc[:2].isna().all()
    # retry_invalid re-asks exactly the unparsable answer (order 21 of pair 1 and order 12 of pair 2
    # show the same prompt, so it is one request)
    calls = judge.calls
    fixed = rank(_pairs(), judge, store=store, retry_invalid=True, progress=False)
    assert judge.calls - calls == 1 and fixed["decision"].tolist() == ["a", "b", "b"]
    assert rank(_pairs(), judge, store=store, progress=False)["cached"].all()


def test_one_order_protocol():
    out = rank(_pairs(), ChoiceJudge(lambda f, s: "Output (a)"), store=False, both_orders=False, progress=False)
    assert out["decision"].tolist() == ["a"] * 3 and out["verdict_21"].isna().all()
    assert out.attrs["stats"]["requests"] == 3


def test_make_pairs_counts_and_carries_source():
    responses = pd.DataFrame({"instruction": ["q1"] * 4 + ["q2"] * 3, "input": [""] * 7,
                              "response": ["a", "b", "c", "c", "x", "y", "z"], "source": ["s1"] * 4 + ["s2"] * 3})
    pairs = make_pairs(responses)
    # q1 has 3 distinct responses (a repeated "c" is paired once): 3 pairs; q2: 3 pairs
    assert len(pairs) == 6 and pairs["source"].tolist() == ["s1"] * 3 + ["s2"] * 3
    assert (pairs["response1"] != pairs["response2"]).all()


def test_cli_rank_end_to_end(tmp_path, capsys):
    from sflib.cli import main

    pairs = pd.DataFrame({"instruction": ["Explain rain.", "Explain rain.", "Name a fruit."],
                          "input": ["", "", "one word"], "response1": ["Water from clouds.", "Rain.", "Apple"],
                          "response2": ["Rain.", "Sky water", "Car"]})
    recorded = pairs.assign(decision=["a", "equal", "b"])
    sfio.write_table(recorded, tmp_path / "recorded.jsonl")
    d.write_pairs_csv(pairs, tmp_path / "pairs.csv")
    code = main(["rank", "--judge", f"recorded:{tmp_path / 'recorded.jsonl'}", "--input", str(tmp_path / "pairs.csv"),
                 "--output", str(tmp_path / "rankings.csv"), "--store", str(tmp_path / "s.sqlite"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "decisions: a=1, b=1, equal=1" in out and "orders disagree on 0.33 of 3 pairs" in out
    back = sfio.read_rankings(tmp_path / "rankings.csv")
    assert back["decision"].tolist() == ["a", "equal", "b"]


def test_rank_through_openai_judge_against_fake_server(tmp_path):
    fake_openai = pytest.importorskip("fake_openai")
    from sflib.judges import get_judge

    with fake_openai.FakeOpenAI(latency=0.0) as server:
        judge = get_judge("openai:gpt-4o-mini", base_url=server.url, api_key="sk-test-not-a-secret")
        out = rank(_pairs(), judge, store=tmp_path / "s.sqlite", progress=False)
        # pairs 1 and 2 are one pair in swapped orders: 4 distinct prompts among the 6 requests
        assert server.requests == 4 and out.attrs["stats"]["requests"] == 6 and out.attrs["stats"]["called"] == 4
        assert out["verdict_12"].iloc[0] == out["verdict_21"].iloc[1]
        assert out["valid"].all() and out["raw_12"].isin(["Output (a)", "Output (b)"]).all()
        expected = [combine_verdicts(a, b) for a, b in zip(out["verdict_12"], out["verdict_21"])]
        assert out["decision"].tolist() == expected
        rank(_pairs(), judge, store=tmp_path / "s.sqlite", progress=False)
        assert server.requests == 4  # all cached


class _FirstJudge(Judge):
    """Always picks the first-shown output."""

    name = "fake:first"
    model = "fake"
    params = {}

    def complete(self, requests):
        for i, _ in enumerate(requests):
            yield i, Completion(text="Output (a)")


def test_cli_rank_reads_alpaca_outputs_and_refuses_single_responses(tmp_path, capsys, monkeypatch):
    """rank --input takes the layouts rate takes (Alpaca instruction/input/output), and one response per
    instruction is a clear error instead of n=0 and a nan position bias."""
    from sflib import judges
    from sflib.cli import main

    monkeypatch.setitem(judges._REGISTRY, "fakefirst", lambda rest, **kw: _FirstJudge())
    single = pd.DataFrame({"instruction": ["Explain rain.", "Name a fruit."], "input": ["", "one word"],
                           "output": ["Water from clouds.", "Apple"]})
    single.to_parquet(tmp_path / "alpaca.parquet")
    code = main(["rank", "--judge", "fakefirst:x", "--input", str(tmp_path / "alpaca.parquet"), "--output",
                 str(tmp_path / "r.jsonl"), "--no-store", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "no pairs: every instruction has one response; rank needs >= 2 per instruction" in err
    assert "alpaca.parquet" in err and not (tmp_path / "r.jsonl").exists()
    several = pd.concat([single, single.assign(output=["Rain.", "Pear"]), single.assign(output=["Sky", "Fig"])])
    several.to_parquet(tmp_path / "alpaca3.parquet")
    (tmp_path / "alpaca3.json").write_text(several.to_json(orient="records"))
    for name in ("alpaca3.parquet", "alpaca3.json"):
        code = main(["rank", "--judge", "fakefirst:x", "--input", str(tmp_path / name), "--output",
                     str(tmp_path / "r.jsonl"), "--no-store", "--quiet", "--limit", "1"])
        out = capsys.readouterr().out
        assert code == 0
        table = sfio.read_table(tmp_path / "r.jsonl")
        # --limit 1: only the first instruction's 3 pairs; always-first judge: every decision 'equal'
        assert len(table) == 3 and set(table["instruction"]) == {"Explain rain."}
        assert (table["decision"] == "equal").all() and "orders disagree on 1.00 of 3 pairs" in out


def test_cli_rank_exits_non_zero_when_verdicts_are_unreadable(tmp_path, capsys, monkeypatch):
    from sflib import judges
    from sflib.cli import main

    class Mumbler(_FirstJudge):
        name = "fake:mumble"

        def complete(self, requests):
            for i, _ in enumerate(requests):
                yield i, Completion(text="Both have merits.")

    monkeypatch.setitem(judges._REGISTRY, "mumble", lambda rest, **kw: Mumbler())
    pairs = pd.DataFrame({"instruction": ["Explain rain."], "input": [""], "response1": ["Water."],
                          "response2": ["Rain."]})
    d.write_pairs_csv(pairs, tmp_path / "pairs.csv")
    code = main(["rank", "--judge", "mumble:x", "--input", str(tmp_path / "pairs.csv"), "--output",
                 str(tmp_path / "r.jsonl"), "--no-store", "--quiet"])
    captured = capsys.readouterr()
    assert code == 3 and "1 invalid" in captured.err and "no pair has a valid verdict in both orders" in captured.out
    assert (tmp_path / "r.partial.jsonl").exists() and not (tmp_path / "r.jsonl").exists()
