"""Stage 07: win-rate arithmetic, intervals, paired comparison, alignment of bad inputs, the original
scripts' rules on the vendored files (checked against an independent csv-module count), and the
judge-driven evaluate() with a deterministic fake judge."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pandas as pd
import pytest

from sflib import evaluation as ev
from sflib.judges.base import Completion, Judge


def _sem_ci(values):
    """1.96·SEM ×100 computed by hand (sample SD)."""
    m = sum(values) / len(values)
    var = sum((v - m) ** 2 for v in values) / (len(values) - 1)
    return 100 * 1.96 * math.sqrt(var) / math.sqrt(len(values))


def _scores(pairs):
    return pd.DataFrame({"instruction": [p[0] for p in pairs], "score": [p[1] for p in pairs]})


# ----------------------------------------------------------------------------- arithmetic

def test_rating_protocol_wins_ties_losses_and_sem_interval():
    pol = _scores([("q1", 5), ("q2", 3), ("q3", 4), ("q4", 7)])
    ref = _scores([("q1", 4), ("q2", 3), ("q3", 6), ("q4", 1)])
    r = ev.winrate_from_ratings(pol, ref)
    assert (r.wins, r.ties, r.losses, r.n) == (2, 1, 1, 4)
    assert r.winrate == pytest.approx(100 * (1 + 0.5 + 0 + 1) / 4)
    assert r.ci_sem == pytest.approx(_sem_ci([1, 0.5, 0, 1]))
    assert list(r.items["win"]) == [1.0, 0.5, 0.0, 1.0]
    assert r.dropped == {} and r.n_items == 4


def test_rating_protocol_reports_missing_and_invalid_judgments():
    pol = _scores([("q1", 6), ("q2", float("nan")), ("q3", 2), ("q1", 1)])   # q1 twice: first counts
    ref = _scores([("q1", 5), ("q2", 4), ("q5", 3)])
    items = pd.DataFrame({"instruction": ["q1", "q2", "q3", "q4", "q5"]})
    r = ev.winrate_from_ratings(pol, ref, items=items)
    assert r.n == 1 and r.wins == 1                       # only q1 (6 > 5; the duplicate 1 is ignored)
    assert r.dropped == {"policy judgment invalid": 1, "no reference judgment": 1,
                         "no policy judgment and no reference judgment": 1, "no policy judgment": 1}
    assert r.n + r.n_dropped == r.n_items == 5
    assert r.ignored == {"duplicate policy judgment of an instruction (first kept)": 1}
    assert set(r.items.loc[r.items["win"].isna(), "instruction"]) == {"q2", "q3", "q4", "q5"}


def test_rating_judgment_of_a_different_output_is_dropped():
    items = pd.DataFrame({"instruction": ["q1", "q2"], "policy_output": ["p1", "p2"],
                          "reference_output": ["r1", "r2"]})
    pol = pd.DataFrame({"instruction": ["q1", "q2"], "response": ["p1", "something else"], "score": [5, 5]})
    ref = pd.DataFrame({"instruction": ["q1", "q2"], "response": ["r1\r\n", "r2"], "score": [5, 5]})
    r = ev.winrate_from_ratings(pol, ref, items=items)
    assert r.n == 1 and r.ties == 1                        # CRLF / trailing space do not count as different
    assert r.dropped == {"policy judgment is of a different output": 1}


def test_ranking_protocol_decisions_and_invalid_ones():
    r = ev.winrate_from_rankings(["b", "equal", "a", "b", None, "x"])
    assert (r.wins, r.ties, r.losses, r.n) == (2, 1, 1, 4)
    assert r.winrate == pytest.approx(100 * 2.5 / 4)
    assert r.ci_sem == pytest.approx(_sem_ci([1, 0.5, 0, 1]))
    assert r.dropped == {"ranking judgment invalid": 2}
    df = pd.DataFrame({"instruction": ["q1", "q2", "q1"], "decision": ["a", float("nan"), "b"],
                       "status": ["ok", "failed", "ok"]})
    r = ev.winrate_from_rankings(df)
    assert r.n == 1 and r.losses == 1                     # first judgment of q1 is (a): the reference wins
    assert r.dropped == {"ranking judgment failed": 1}
    assert r.ignored == {"duplicate ranking judgment of an instruction (first kept)": 1}


def test_bootstrap_is_deterministic_with_a_seed_and_brackets_the_mean():
    rng = np.random.default_rng(1)
    values = rng.choice([0.0, 0.5, 1.0], size=200, p=[0.3, 0.2, 0.5])
    a = ev.bootstrap_ci(values, seed=7, n_boot=500)
    b = ev.bootstrap_ci(values, seed=7, n_boot=500)
    c = ev.bootstrap_ci(values, seed=8, n_boot=500)
    assert a == b and a != c
    assert a[0] < values.mean() < a[1]
    half = (a[1] - a[0]) / 2
    assert half == pytest.approx(ev.ci_sem(values), rel=0.25)  # bootstrap ≈ normal interval at n=200
    assert all(math.isnan(x) for x in ev.bootstrap_ci([1.0]))


def test_compare_policies_paired_difference():
    ref = _scores([(f"q{i}", 4) for i in range(5)])
    a = ev.winrate_from_ratings(_scores([("q0", 5), ("q1", 5), ("q2", 4), ("q3", 3), ("q4", 6)]), ref)
    b = ev.winrate_from_ratings(_scores([("q0", 3), ("q1", 5), ("q2", 4), ("q3", 3)]), ref)
    c = ev.compare_policies(a, b)
    # common q0..q3: a wins [1, 1, .5, 0], b wins [0, 1, .5, 0] -> differences [1, 0, 0, 0]
    assert (c.n, c.only_a, c.only_b) == (4, 1, 0)
    assert c.diff == pytest.approx(25.0)
    assert c.winrate_a == pytest.approx(62.5) and c.winrate_b == pytest.approx(37.5)
    assert (c.a_better, c.b_better, c.same) == (1, 0, 3)
    assert c.ci_sem == pytest.approx(_sem_ci([1, 0, 0, 0]))
    rank_a = ev.winrate_from_rankings(pd.DataFrame({"instruction": ["q0", "q1"], "decision": ["b", "b"]}))
    rank_b = ev.winrate_from_rankings(pd.DataFrame({"instruction": ["q0", "q1"], "decision": ["a", "equal"]}))
    table = ev.compare_policies({"rating": a, "ranking": rank_a}, {"rating": b, "ranking": rank_b})
    assert list(table["protocol"]) == ["rating", "ranking"]
    assert table.set_index("protocol").loc["ranking", "diff"] == pytest.approx(75.0)
    with pytest.raises(ValueError, match="protocols differ"):
        ev.compare_policies(a, rank_b)


# ----------------------------------------------------------------------------- alignment

def _outputs(rows):
    return pd.DataFrame(rows, columns=["instruction", "output", "dataset"]).assign(generator="g")


def test_align_outputs_reports_bad_input_with_counts():
    ref = _outputs([("q1", "r1", "koala"), ("q2", "r2", "koala"), ("q3", "r3", "oasst"), ("q4", "", "oasst"),
                    ("q5", "r5", "selfinstruct"), ("q1", "r1 again", "koala")])
    pol = _outputs([("q1", "p1", "koala"), ("q1", "p1 dup", "koala"), ("q3", "  ", "oasst"),
                    ("q4", "p4", "oasst"), ("q9", "p9", "koala"), ("q5", "p5", "selfinstruct")])
    al = ev.align_outputs(pol, ref, datasets=["koala", "oasst"], policy="P", reference="R")
    assert len(al.items) == 4                                  # q1..q4: the reference's, in the datasets
    assert list(al.pairs["instruction"]) == ["q1"]
    assert al.pairs["policy_output"].iloc[0] == "p1"           # first of the duplicates
    assert al.dropped == {"no policy output": 1, "empty policy output": 1, "empty reference output": 1}
    assert al.ignored == {
        "duplicate instruction in reference outputs (first kept)": 1,
        "duplicate instruction in policy outputs (first kept)": 1,
        "reference instruction outside the selected datasets (selfinstruct)": 1,
        "policy output for a reference instruction outside the selected datasets": 1,
        "policy output for an instruction the reference lacks": 1}
    # the win rate states the n it was computed on, and the alignment's drops are in its counts
    r = ev.winrate_from_ratings(_scores([("q1", 6)]), _scores([("q1", 5)]), items=al)
    assert (r.n, r.n_items, r.winrate) == (1, 4, 100.0)
    assert r.dropped == al.dropped and r.ignored == al.ignored
    assert "n=1 of 4" in str(r)


def test_no_overlap_gives_n_zero_not_an_error():
    al = ev.align_outputs(_outputs([("x", "px", "")]), _outputs([("y", "ry", "")]))
    assert al.dropped == {"no policy output": 1}
    r = ev.winrate_from_rankings(pd.DataFrame({"instruction": ["y"], "decision": ["b"]}), items=al)
    assert r.n == 0 and math.isnan(r.winrate) and r.dropped == {"no policy output": 1}


# ----------------------------------------------------------------------------- vendored files

def _csv_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_original_rules_on_vendored_files_match_an_independent_count():
    v = ev.vendored_paths()
    first = {}
    for name in ("reference_ratings", "ratings_rm_ratings"):
        seen = {}
        for row in _csv_rows(v[name]):
            seen.setdefault(row[0].replace("\r\n", "\n"), int(float(row[3])))
        first[name] = seen
    common = [i for i in first["reference_ratings"] if i in first["ratings_rm_ratings"]]
    wins = [1.0 if first["ratings_rm_ratings"][i] > first["reference_ratings"][i]
            else 0.5 if first["ratings_rm_ratings"][i] == first["reference_ratings"][i] else 0.0 for i in common]
    o = ev.original_winrate_from_ratings(v["reference_ratings"], v["ratings_rm_ratings"])
    assert o.n == len(common) and (o.wins, o.ties, o.losses) == (wins.count(1.0), wins.count(0.5), wins.count(0.0))
    assert o.winrate == pytest.approx(100 * sum(wins) / len(wins))
    assert o.ci_sem == pytest.approx(_sem_ci(wins))
    assert o.rows["reference_rows"] == len(_csv_rows(v["reference_ratings"]))

    labels = [row[4] for row in _csv_rows(v["ratings_rm_rankings"])]
    rk = ev.original_winrate_from_rankings(v["ratings_rm_rankings"])
    assert (rk.wins, rk.ties, rk.losses, rk.n) == (labels.count("(b)"), labels.count("equal"),
                                                   labels.count("(a)"), len(labels))

    # ours, on the 553-instruction evaluation set: the same counted judgments, with every drop named
    res = ev.winrates_from_recorded(v["ratings_rm"], v["reference"], policy_ratings=v["ratings_rm_ratings"],
                                    reference_ratings=v["reference_ratings"], rankings=v["ratings_rm_rankings"],
                                    n_boot=200)
    rating, ranking = res["rating"], res["ranking"]
    with open(v["ratings_rm"], encoding="utf-8") as f:
        n_policy = len(json.load(f))
    assert rating.n_items == ranking.n_items == n_policy
    assert (rating.n, rating.wins, rating.ties, rating.losses) == (o.n, o.wins, o.ties, o.losses)
    assert rating.winrate == pytest.approx(o.winrate)
    assert (ranking.n, ranking.wins, ranking.ties, ranking.losses) == (rk.n, rk.wins, rk.ties, rk.losses)
    assert rating.n + rating.n_dropped == ranking.n + ranking.n_dropped == n_policy
    assert rating.dropped["no reference judgment"] == len(first["ratings_rm_ratings"]) - len(common)


def test_recorded_judgments_never_transfer_to_a_different_output():
    v = ev.vendored_paths()
    # the ratings-RM policy's recordings offered as the rankings-RM policy's: only instructions where
    # both policies chose the very same output may count
    with open(v["ratings_rm"], encoding="utf-8") as f:
        a = {r["instruction"]: r["output"] for r in json.load(f)}
    with open(v["rankings_rm"], encoding="utf-8") as f:
        b = {r["instruction"]: r["output"] for r in json.load(f)}
    recorded = {row[0] for row in _csv_rows(v["ratings_rm_ratings"])}
    ref_recorded = {row[0] for row in _csv_rows(v["reference_ratings"])}
    same = [i for i in recorded & ref_recorded if a[i].strip() == b[i].strip()]
    res = ev.winrates_from_recorded(v["rankings_rm"], v["reference"], policy_ratings=v["ratings_rm_ratings"],
                                    reference_ratings=v["reference_ratings"], n_boot=50)
    assert res["rating"].n == len(same)
    assert res["ranking"].n == 0 and res["ranking"].dropped == {"no recorded ranking": res["ranking"].n_items}


# ----------------------------------------------------------------------------- judge-driven

class FakeJudge(Judge):
    """Rates 7 an output containing 'good', else 3; in a pair prefers the one containing 'good' and,
    when both or neither do, always says Output (a) (a pure position bias -> 'equal')."""

    name = "fake:test"
    model = "fake"
    params = {}

    def __init__(self):
        self.asked = []

    def complete(self, requests):
        for i, req in enumerate(requests):
            m = req.meta
            self.asked.append(dict(m))
            if m["kind"] == "rating":
                yield i, Completion(text=f"Score: {7 if 'good' in m['response'] else 3}")
            else:
                first, second = ((m["response1"], m["response2"]) if m["order"] == "12"
                                 else (m["response2"], m["response1"]))
                pick = "b" if ("good" in second and "good" not in first) else "a"
                yield i, Completion(text=f"Output ({pick})")


def test_evaluate_with_a_fake_judge_both_protocols_both_orders():
    ref = _outputs([("q1", "ref one", "koala"), ("q2", "ref two good", "koala"), ("q3", "ref three", "oasst"),
                    ("q4", "ref four", "oasst")])
    pol = _outputs([("q1", "pol good", "koala"), ("q2", "pol two", "koala"), ("q3", "pol three", "oasst"),
                    ("q4", "", "oasst")])
    judge = FakeJudge()
    e = ev.evaluate(pol, ref, judge, store=False, policy="P", reference="R", n_boot=100, progress=False)
    rating, ranking = e.results["rating"], e.results["ranking"]
    # q1 policy good (win), q2 reference good (loss), q3 neither (tie); q4 empty policy output: dropped
    assert (rating.wins, rating.ties, rating.losses, rating.n) == (1, 1, 1, 3)
    assert (ranking.wins, ranking.ties, ranking.losses, ranking.n) == (1, 1, 1, 3)
    assert rating.dropped == ranking.dropped == {"empty policy output": 1}
    ranks = [m for m in judge.asked if m["kind"] == "ranking"]
    assert len(ranks) == 2 * 3 and {m["order"] for m in ranks} == {"12", "21"}
    assert all(m["response1"].startswith("ref") and m["response2"].startswith("pol") for m in ranks)
    assert sum(m["kind"] == "rating" for m in judge.asked) == 2 * 3
    assert list(ranking.items["decision"][:3]) == ["b", "a", "equal"]
    assert e.table().shape[0] == 2 and e.summary()["results"]["rating"]["n"] == 3
    assert json.loads(json.dumps(e.summary()))["results"]["ranking"]["dropped"] == {"empty policy output": 1}
    assert set(ranking.items.columns) >= {"verdict_12", "verdict_21", "decision", "win", "reason"}
    nothing = ev.evaluate(_outputs([("zz", "x", "")]), ref, FakeJudge(), store=False, n_boot=10, progress=False)
    assert nothing.results["rating"].n == 0 and nothing.results["ranking"].dropped == {"no policy output": 4}
    only = ev.evaluate(pol, ref, FakeJudge(), protocols=("ranking",), store=False, limit=1, n_boot=50,
                       progress=False)
    assert list(only.results) == ["ranking"] and only.results["ranking"].n == 1
    assert only.results["ranking"].dropped == {"empty policy output": 1, "beyond the limit": 2}


def test_length_analysis_buckets_by_relative_length():
    items = pd.DataFrame({"instruction": ["q1", "q2", "q3"],
                          "policy_output": ["a b c d e f g h", "a b", "a b c"],
                          "reference_output": ["a b", "a b c d e f g h", "a b c"]})
    r = ev.winrate_from_rankings(pd.DataFrame({"instruction": ["q1", "q2", "q3"], "decision": ["b", "a", "equal"]}),
                                 items=items)
    t = ev.length_analysis(r).set_index("bucket")
    assert t["n"].sum() == 3
    assert t.loc["≥ 2×", "winrate"] == 100.0 and t.loc["< 0.5×", "winrate"] == 0.0
    assert t.loc["0.8–1.25×", "winrate"] == 50.0
    lengths = ev.mean_lengths({"p": _outputs([("q", "one two three", ""), ("r", "one", "")])})
    assert lengths.loc[0, "mean_words"] == 2.0


def test_cli_offline_writes_json(tmp_path, capsys):
    from sflib.cli import main

    v = ev.vendored_paths()
    out = tmp_path / "w.json"
    rc = main(["winrate", "--policy", str(v["ratings_rm"]), "--reference", str(v["reference"]),
               "--policy-ratings", str(v["ratings_rm_ratings"]), "--reference-ratings", str(v["reference_ratings"]),
               "--rankings", str(v["ratings_rm_rankings"]), "--datasets", *ev.PAPER_DATASETS,
               "--n-boot", "100", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    pol = next(iter(data["policies"].values()))
    assert pol["results"]["rating"]["n"] == pol["original_rules"]["rating"]["n"]
    assert pol["results"]["ranking"]["n_items"] == 553
    assert "original rules (ranking)" in capsys.readouterr().out
    assert main(["winrate", "--policy", str(v["ratings_rm"]), "--reference", str(v["reference"])]) == 1


# ----------------------------------------------------------------------------- soft verdicts

def test_soft_rating_protocol_compares_expected_scores():
    pol = pd.DataFrame({"instruction": ["q1", "q2", "q3", "q4"], "score": [5, 5, 4, 6],
                        "expected_score": [5.3, 4.8, np.nan, 5.5]})
    ref = pd.DataFrame({"instruction": ["q1", "q2", "q3", "q4"], "score": [5, 5, 5, 6],
                        "expected_score": [5.1, 4.9, 4.6, 5.5]})
    hard = ev.winrate_from_ratings(pol, ref)
    soft = ev.winrate_from_ratings(pol, ref, verdicts="soft")
    assert list(hard.items["win"]) == [0.5, 0.5, 0.0, 0.5]
    # q3's policy has no expected score: its hard 4 against the reference's 4.6
    assert list(soft.items["win"]) == [1.0, 0.0, 0.0, 0.5]
    assert soft.verdicts == "soft" and soft.notes == ["1 ratings without 'expected_score' use their hard score"]
    assert (soft.wins, soft.ties, soft.losses) == (1, 1, 2)
    assert soft.summary()["verdicts"] == "soft" and "soft verdicts" in str(soft)


def test_soft_ranking_protocol_is_the_mean_probability_that_the_policy_is_better():
    df = pd.DataFrame({"instruction": ["q1", "q2", "q3", "q4"], "decision": ["a", "equal", "b", None],
                       "p_a": [0.8, 0.45, np.nan, 0.3]})
    r = ev.winrate_from_rankings(df, verdicts="soft")
    # q3 falls back to its hard decision (b: 1); q4 has no text decision but a p_a: counted
    assert list(r.items["win"]) == pytest.approx([0.2, 0.55, 1.0, 0.7])
    assert r.winrate == pytest.approx(100 * (0.2 + 0.55 + 1.0 + 0.7) / 4)
    assert r.ci_sem == pytest.approx(_sem_ci([0.2, 0.55, 1.0, 0.7]))
    assert (r.wins, r.ties, r.losses, r.n) == (3, 0, 1, 4)
    hard = ev.winrate_from_rankings(df)
    assert hard.n == 3 and hard.dropped == {"ranking judgment invalid": 1}


def test_soft_without_columns_falls_back_to_hard_with_a_note():
    df = pd.DataFrame({"instruction": ["q1", "q2"], "decision": ["b", "a"]})
    r = ev.winrate_from_rankings(df, verdicts="soft")
    assert r.verdicts == "hard" and "no 'p_a' column" in r.notes[0] and r.winrate == 50.0
    pol = pd.DataFrame({"instruction": ["q1"], "score": [5], "expected_score": [5.5]})
    ref = pd.DataFrame({"instruction": ["q1"], "score": [4]})
    r = ev.winrate_from_ratings(pol, ref, verdicts="soft")
    assert r.verdicts == "hard" and any("hard verdicts used for both sides" in n for n in r.notes)
    e = ev.evaluate(_outputs([("q1", "pol good", "")]), _outputs([("q1", "ref", "")]), FakeJudge(), store=False,
                    n_boot=10, progress=False, verdicts="soft")
    assert all(res.verdicts == "hard" and res.notes for res in e.results.values())
    assert e.results["ranking"].n == 1


def test_recorded_canonical_tables_with_soft_columns(tmp_path):
    from sflib import io as sfio
    from sflib.core import data as sfdata

    ref = _outputs([("q1", "r1", "koala"), ("q2", "r2", "koala"), ("q3", "r3", "oasst")])
    pol = _outputs([("q1", "p1", "koala"), ("q2", "p2", "koala"), ("q3", "p3", "oasst")])
    rankings = sfdata.add_ids(pd.DataFrame({"instruction": ["q1", "q2", "q3"], "input": "",
                                            "response1": ["r1", "r2", "r3"], "response2": ["p1", "p2", "p3"],
                                            "decision": ["b", "equal", "a"], "p_a": [0.1, 0.6, np.nan]}))
    sfio.write_table(rankings, tmp_path / "rankings.jsonl")
    hard = ev.winrates_from_recorded(pol, ref, rankings=tmp_path / "rankings.jsonl", datasets=None, n_boot=20)
    soft = ev.winrates_from_recorded(pol, ref, rankings=tmp_path / "rankings.jsonl", datasets=None, n_boot=20,
                                     verdicts="soft")
    assert list(hard["ranking"].items["win"]) == [1.0, 0.5, 0.0]
    assert list(soft["ranking"].items["win"]) == pytest.approx([0.9, 0.4, 0.0])
    assert soft["ranking"].verdicts == "soft" and soft["rating"].n == 0
