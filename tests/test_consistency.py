"""Stage 04 (consistency): the vectorised sflib.consistency against a row-by-row oracle.

The oracle below is the original consistency script's definition written as the original wrote
it: pandas.read_csv of the two headerless CSVs, drop duplicate rows keeping the first, a dict from
(instruction, input, output) to score, then a Python loop over the rankings rows that looks both
outputs up, skips the row if either is missing, derives the ratings preference (higher score wins,
equal scores = equal) and counts it against the rankings label. bench/consistency.py imports it.
"""
from __future__ import annotations

import csv
import json
import random
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sflib.core import stats

from sflib import cli, consistency
from sflib.core import data
from sflib import io as sfio
from sflib.core.data import DataError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "original" / "alpaca_generation"
SAMPLE_RATINGS = SAMPLE / "feedback_ratings_sample_generation.csv"
SAMPLE_RANKINGS = SAMPLE / "feedback_rankings_sample_generation.csv"
ORDER = ("a", "b", "equal")
ORACLE_LABELS = {"(a)": "a", "(b)": "b", "equal": "equal"}


# ----------------------------------------------------------------------------- the oracle

def oracle(ratings: pd.DataFrame, rankings: pd.DataFrame, use_iloc: bool = True) -> dict:
    """Row-by-row reference on raw frames (columns instruction,input,output,score and
    instruction,input,output1,output2,feedback). ``use_iloc`` walks rows with ``df.iloc[i]`` as the
    original did; otherwise with ``itertuples`` (same result, faster loop)."""
    ratings = ratings.drop_duplicates(subset=["instruction", "input", "output"])
    rankings = rankings.drop_duplicates(subset=["instruction", "input", "output1", "output2"])

    def rows(df):
        if use_iloc:
            for i in range(len(df)):
                yield df.index[i], df.iloc[i]
        else:
            for row in df.itertuples():
                yield row.Index, row._asdict()

    scores = {}
    for _, row in rows(ratings):
        # str() like the original's f-string key: a NaN input becomes 'nan' in both files
        scores[(str(row["instruction"]), str(row["input"]), str(row["output"]))] = row["score"]
    matrix = {r: {k: 0 for k in ORDER} for r in ORDER}
    pairs, skipped = [], 0
    for index, row in rows(rankings):
        key1 = (str(row["instruction"]), str(row["input"]), str(row["output1"]))
        key2 = (str(row["instruction"]), str(row["input"]), str(row["output2"]))
        if key1 not in scores or key2 not in scores:
            skipped += 1
            continue
        s1, s2 = scores[key1], scores[key2]
        says = "equal" if s1 == s2 else ("a" if s1 > s2 else "b")
        label = ORACLE_LABELS[row["feedback"]]
        matrix[says][label] += 1
        pairs.append((int(index) + 1, int(s1), int(s2), says, label))
    total = sum(sum(r.values()) for r in matrix.values())
    agree = sum(matrix[d][d] for d in ORDER)
    return {"matrix": [[matrix[r][k] for k in ORDER] for r in ORDER], "skipped": skipped, "pairs": pairs,
            "consistency": agree / total if total else float("nan")}


def read_raw(ratings_csv, rankings_csv) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two headerless CSVs read the way the original script read them (pandas defaults)."""
    return (pd.read_csv(ratings_csv, names=["instruction", "input", "output", "score"]),
            pd.read_csv(rankings_csv, names=["instruction", "input", "output1", "output2", "feedback"]))


def oracle_from_csv(ratings_csv, rankings_csv, use_iloc: bool = True) -> dict:
    return oracle(*read_raw(ratings_csv, rankings_csv), use_iloc=use_iloc)


def fast_from_csv(ratings_csv, rankings_csv, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", consistency.ConsistencyWarning)
        return consistency.report(sfio.read_ratings(ratings_csv), sfio.read_rankings(rankings_csv), **kw)


def assert_same(rep: consistency.ConsistencyReport, ref: dict) -> None:
    assert rep.matrix.to_numpy().tolist() == ref["matrix"]
    assert rep.n_skipped_missing_rating == ref["skipped"]
    got = list(zip(rep.pairs["row"], rep.pairs["score1"], rep.pairs["score2"],
                   rep.pairs["ratings_decision"], rep.pairs["rankings_decision"]))
    assert [tuple(int(x) if i < 3 else x for i, x in enumerate(p)) for p in got] == ref["pairs"]
    assert rep.consistency == pytest.approx(ref["consistency"], abs=1e-15)


# ----------------------------------------------------------------------------- random feedback

WORDS = ["alpha", "beta", "gamma", "delta, with a comma", 'a "quoted" word', "new\nline", "émoji ✓", "x"]


def random_feedback(folder: Path, seed: int) -> tuple[Path, Path]:
    """Headerless CSVs with duplicates (same and different score/decision), ties, missing ratings,
    identical responses within an instruction, both pair orders, empty inputs and unranked rows."""
    rnd = random.Random(seed)
    ratings, rankings = [], []
    for i in range(rnd.randint(3, 25)):
        instruction = f"instr {i} " + rnd.choice(WORDS)
        inp = rnd.choice(["", "", f"input {i} " + rnd.choice(WORDS)])
        k = rnd.randint(2, 6)
        responses = [f"resp {i}-{rnd.randint(0, k + 1)} " + rnd.choice(WORDS) for _ in range(k)]  # repeats happen
        for resp in responses:
            if rnd.random() < 0.15:
                continue  # missing rating
            ratings.append([instruction, inp, resp, rnd.randint(3, 6)])  # narrow range: many ties
            if rnd.random() < 0.1:
                ratings.append([instruction, inp, resp, rnd.randint(1, 7)])  # duplicate, maybe another score
        for a in range(k):
            for b in range(k):
                if a == b or rnd.random() < 0.5:
                    continue
                row = [instruction, inp, responses[a], responses[b], rnd.choice(["(a)", "(b)", "equal"])]
                rankings.append(row)
                if rnd.random() < 0.1:
                    rankings.append(row[:4] + [rnd.choice(["(a)", "(b)", "equal"])])  # duplicate pair
        if rnd.random() < 0.1:  # an instruction that was ranked but never rated
            rankings.append([instruction + " unrated", inp, responses[0], responses[1], "(a)"])
    rnd.shuffle(ratings)
    rnd.shuffle(rankings)
    r, k = folder / f"ratings_{seed}.csv", folder / f"rankings_{seed}.csv"
    for path, rows in ((r, ratings), (k, rankings)):
        with open(path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
    return r, k


# ----------------------------------------------------------------------------- oracle equality

def test_vendored_sample_matches_oracle():
    ref = oracle_from_csv(SAMPLE_RATINGS, SAMPLE_RANKINGS)
    rep = fast_from_csv(SAMPLE_RATINGS, SAMPLE_RANKINGS, bootstrap=0)
    assert_same(rep, ref)
    # what the sample is: 118 ranked pairs, one references the unrated response; 2 duplicate ratings
    assert rep.n_compared + rep.n_skipped_missing_rating == 118
    assert rep.counts["n_duplicate_ratings"] == 2


@pytest.mark.parametrize("seed", range(25))
def test_random_feedback_matches_oracle(tmp_path, seed):
    r, k = random_feedback(tmp_path, seed)
    ref = oracle_from_csv(r, k, use_iloc=seed % 2 == 0)
    if not ref["pairs"]:
        with pytest.raises(DataError):
            fast_from_csv(r, k, bootstrap=0)
        return
    assert_same(fast_from_csv(r, k, bootstrap=0), ref)


def test_random_feedback_exercises_the_edge_cases(tmp_path):
    """The generator really produces what the equality test claims to cover."""
    seen = Counter()
    for seed in range(25):
        r, k = random_feedback(tmp_path, seed)
        rep = fast_from_csv(r, k, bootstrap=0)
        seen["dup_ratings_conflicting"] += rep.counts["n_conflicting_duplicate_ratings"]
        seen["dup_rankings_conflicting"] += rep.counts["n_conflicting_duplicate_rankings"]
        seen["skipped"] += rep.n_skipped_missing_rating
        seen["ratings_ties"] += int(rep.matrix.iloc[2].sum())
        seen["diag"] += rep.n_agree
        seen["offdiag"] += rep.n_compared - rep.n_agree
    assert all(v > 0 for v in seen.values()), seen


def test_first_occurrence_wins():
    rows = [("i", "", "r1", 7), ("i", "", "r2", 3), ("i", "", "r1", 1)]
    ratings = data.add_ids(pd.DataFrame(rows, columns=["instruction", "input", "response", "score"]))
    rankings = data.add_ids(pd.DataFrame(
        [("i", "", "r1", "r2", "a"), ("i", "", "r1", "r2", "b"), ("i", "", "r2", "r1", "b")],
        columns=["instruction", "input", "response1", "response2", "decision"]))
    pairs = consistency.compare(ratings, rankings)
    assert pairs[["score1", "score2", "ratings_decision", "rankings_decision"]].values.tolist() == [
        [7, 3, "a", "a"], [3, 7, "b", "b"]]
    c = pairs.attrs["counts"]
    assert (c["n_duplicate_ratings"], c["n_conflicting_duplicate_ratings"]) == (1, 1)
    assert (c["n_duplicate_rankings"], c["n_conflicting_duplicate_rankings"]) == (1, 1)


# ----------------------------------------------------------------------------- kappa

@pytest.mark.parametrize("matrix, expected", [
    ([[5, 0, 0], [0, 3, 0], [0, 0, 2]], 1.0),                       # perfect agreement
    ([[20, 5, 0], [10, 15, 0], [0, 0, 0]], 0.4),                    # po .7, pe .5
    ([[10, 2, 3], [1, 8, 1], [4, 0, 6]], 415 / 800),                # po 24/35, pe 425/1225
    ([[0, 5, 0], [5, 0, 0], [0, 0, 0]], -1.0),                      # perfect disagreement
    ([[4, 4, 0], [4, 4, 0], [0, 0, 0]], 0.0),                       # chance level
])
def test_kappa_hand_computed(matrix, expected):
    assert consistency.cohen_kappa(np.array(matrix)) == pytest.approx(expected)
    assert float(stats.agreement_stats(np.array(matrix).ravel())["kappa"]) == pytest.approx(expected)


def test_kappa_undefined_when_one_label():
    assert np.isnan(consistency.cohen_kappa(np.array([[0, 0, 0], [0, 0, 0], [0, 0, 9]])))


def test_report_kappa_matches_label_counts():
    rep = fast_from_csv(SAMPLE_RATINGS, SAMPLE_RANKINGS, bootstrap=0)
    r, k = list(rep.pairs["ratings_decision"]), list(rep.pairs["rankings_decision"])
    n = len(r)
    po = sum(x == y for x, y in zip(r, k)) / n
    cr, ck = Counter(r), Counter(k)
    pe = sum(cr[d] * ck[d] for d in ORDER) / n ** 2
    assert rep.kappa == pytest.approx((po - pe) / (1 - pe))
    strict = [(x, y) for x, y in zip(r, k) if x != "equal" and y != "equal"]
    assert rep.consistency_excluding_ties == pytest.approx(sum(x == y for x, y in strict) / len(strict))
    assert rep.ratings_tie_rate == pytest.approx(cr["equal"] / n)
    assert rep.rankings_tie_rate == pytest.approx(ck["equal"] / n)


# ----------------------------------------------------------------------------- bootstrap, breakdowns

def test_bootstrap_contains_estimate_and_is_deterministic():
    a = fast_from_csv(SAMPLE_RATINGS, SAMPLE_RANKINGS, bootstrap=500, seed=3)
    b = fast_from_csv(SAMPLE_RATINGS, SAMPLE_RANKINGS, bootstrap=500, seed=3)
    c = fast_from_csv(SAMPLE_RATINGS, SAMPLE_RANKINGS, bootstrap=500, seed=4)
    assert a.ci == b.ci
    assert a.ci != c.ci
    for key in ("consistency", "consistency_excluding_ties", "kappa", "ratings_tie_rate", "rankings_tie_rate"):
        lo, hi = a.ci[key]
        assert lo <= getattr(a, key) <= hi and lo < hi, key
    assert a.by_gap.equals(b.by_gap)
    assert ((a.by_gap["ci_low"] <= a.by_gap["consistency"]) & (a.by_gap["consistency"] <= a.by_gap["ci_high"])).all()


def test_by_gap_and_by_source_add_up():
    ratings = sfio.read_ratings(SAMPLE_RATINGS)
    rankings = sfio.read_rankings(SAMPLE_RANKINGS)
    rankings["source"] = np.where(np.arange(len(rankings)) % 2, "odd", "even")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", consistency.ConsistencyWarning)
        rep = consistency.report(ratings, rankings, bootstrap=0)
    for table in (rep.by_gap, rep.by_source):
        assert table["n"].sum() == rep.n_compared
        assert table["agree"].sum() == rep.n_agree
    assert set(rep.by_source["source"]) == {"odd", "even"}
    assert (rep.pairs["gap"] == (rep.pairs["score1"] - rep.pairs["score2"]).abs()).all()
    assert rep.matrix_normalised.sum(axis=1).to_numpy() == pytest.approx([1, 1, 1])


def test_compare_annotators_side_by_side():
    ratings = sfio.read_ratings(SAMPLE_RATINGS)
    rankings = sfio.read_rankings(SAMPLE_RANKINGS)
    flipped = rankings.assign(decision=rankings["decision"].map({"a": "b", "b": "a", "equal": "equal"}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", consistency.ConsistencyWarning)
        table = consistency.compare_annotators({"judge": (ratings, rankings), "flipped": (ratings, flipped)},
                                               bootstrap=100)
        single = consistency.report(ratings, flipped, bootstrap=100)
    assert list(table.index) == ["judge", "flipped"]
    assert table.loc["flipped", "consistency"] == pytest.approx(single.consistency)
    assert table.loc["flipped", "consistency"] < table.loc["judge", "consistency"]
    assert set(table.attrs["reports"]) == {"judge", "flipped"}


# ----------------------------------------------------------------------------- bad input

def _frames(rat_rows, rank_rows):
    ratings = data.add_ids(pd.DataFrame(rat_rows, columns=["instruction", "input", "response", "score"]))
    rankings = data.add_ids(pd.DataFrame(rank_rows, columns=["instruction", "input", "response1", "response2", "decision"]))
    return ratings, rankings


def test_no_shared_instructions_is_a_clear_error():
    ratings, rankings = _frames([("rated task", "", "r1", 5), ("rated task", "", "r2", 4)],
                                [("ranked task", "", "r1", "r2", "a")])
    with pytest.raises(DataError, match="share no instruction"):
        consistency.report(ratings, rankings)


def test_responses_missing_from_ratings():
    ratings, rankings = _frames([("t", "", "r1", 5), ("t", "", "r2", 4)],
                                [("t", "", "x1", "x2", "a"), ("t", "", "r1", "x2", "b")])
    with pytest.raises(DataError, match=r"none of the 2 ranked pairs can be compared: 2 reference a response"):
        consistency.report(ratings, rankings)
    ratings, rankings = _frames([("t", "", "r1", 5), ("t", "", "r2", 4)],
                                [("t", "", "r1", "r2", "a"), ("t", "", "r1", "x2", "b")])
    with pytest.warns(consistency.ConsistencyWarning, match=r"1 of 2 ranked pairs skipped.*row 2, response2 'x2'"):
        rep = consistency.report(ratings, rankings, bootstrap=0)
    assert (rep.n_compared, rep.n_skipped_missing_rating, rep.consistency) == (1, 1, 1.0)


def test_unknown_labels_are_a_clear_error(tmp_path):
    _, rankings = _frames([], [("t", "", "r1", "r2", "maybe")])
    ratings, _ = _frames([("t", "", "r1", 5), ("t", "", "r2", 4)], [])
    with pytest.raises(DataError, match=r"unknown decision label 'maybe'.*expected a / b / equal"):
        consistency.report(ratings, rankings)
    bad = tmp_path / "rankings.csv"
    bad.write_text('t,,r1,r2,(a)\nt,,r1,r2,(c)\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"row 2.*unknown feedback label '\(c\)'"):
        consistency.load_rankings(bad)


def test_bad_scores_and_undecided_pairs():
    ratings, rankings = _frames([("t", "", "r1", 9), ("t", "", "r2", 4)], [("t", "", "r1", "r2", "a")])
    with pytest.raises(DataError, match=r"score 9 is not an integer on the 1-7 scale"):
        consistency.report(ratings, rankings)
    ratings, rankings = _frames([("t", "", "r1", None), ("t", "", "r2", 4), ("t", "", "r3", 4)],
                                [("t", "", "r1", "r2", "a"), ("t", "", "r2", "r3", None), ("t", "", "r3", "r2", "equal")])
    with pytest.warns(consistency.ConsistencyWarning):
        rep = consistency.report(ratings, rankings, bootstrap=0)
    assert (rep.n_compared, rep.n_skipped_missing_rating, rep.n_skipped_no_decision) == (1, 1, 1)
    assert rep.counts["n_invalid_ratings"] == 1


def test_cli_report_json_and_errors(tmp_path, capsys):
    out = tmp_path / "report.json"
    rc = cli.main(["consistency", "--ratings", str(SAMPLE_RATINGS), "--rankings", str(SAMPLE_RANKINGS),
                   "--json", str(out), "--bootstrap", "50"])
    printed = capsys.readouterr()
    assert rc == 0
    assert "disagree" in printed.out and "rankings says equal" in printed.out
    assert "1 of 118 ranked pairs skipped" in printed.err
    saved = json.loads(out.read_text())
    assert saved["matrix"]["counts"] == oracle_from_csv(SAMPLE_RATINGS, SAMPLE_RANKINGS)["matrix"]
    other = tmp_path / "other.csv"
    other.write_text("another task,,r1,r2,(a)\n", encoding="utf-8")
    rc = cli.main(["consistency", "--ratings", str(SAMPLE_RATINGS), "--rankings", str(other)])
    assert rc == 1 and "share no instruction" in capsys.readouterr().err


def test_canonical_jsonl_tables_load(tmp_path):
    ratings = sfio.read_ratings(SAMPLE_RATINGS)
    rankings = sfio.read_rankings(SAMPLE_RANKINGS)
    sfio.write_table(ratings.drop(columns=["instruction_id", "response_id"]), tmp_path / "ratings.jsonl")
    sfio.write_table(rankings, tmp_path / "rankings.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", consistency.ConsistencyWarning)
        a = consistency.report(consistency.load_ratings(tmp_path / "ratings.jsonl"),
                               consistency.load_rankings(tmp_path / "rankings.parquet"), bootstrap=0)
    assert a.matrix.to_numpy().tolist() == oracle_from_csv(SAMPLE_RATINGS, SAMPLE_RANKINGS)["matrix"]


def test_examples_show_the_pairs_the_two_protocols_prefer_oppositely():
    ratings = sfio.read_ratings(SAMPLE_RATINGS)
    rankings = sfio.read_rankings(SAMPLE_RANKINGS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", consistency.ConsistencyWarning)
        pairs = consistency.compare(ratings, rankings)
    opposite = pairs[pairs["ratings_decision"].isin(["a", "b"]) & pairs["rankings_decision"].isin(["a", "b"])
                     & (pairs["ratings_decision"] != pairs["rankings_decision"])]
    assert len(opposite) >= 3
    ex = consistency.opposite_preferences(pairs, ratings, rankings, n=3, width=60)
    assert list(ex.columns) == ["pair 1", "pair 2", "pair 3"]
    gaps = [abs(ex.loc["rating of (a)", c] - ex.loc["rating of (b)", c]) for c in ex.columns]
    assert gaps == sorted(gaps, reverse=True) and gaps[0] == opposite["gap"].max()
    texts = dict(zip(ratings["response_id"], ratings["response"]))
    first = opposite.sort_values(["gap", "row"], ascending=[False, True], kind="stable").iloc[0]
    col = ex["pair 1"]
    assert {col["ratings prefer"], col["rankings prefer"]} == {"(a)", "(b)"}
    assert col["rankings prefer"] == f"({first.rankings_decision})"
    assert (col["rating of (a)"], col["rating of (b)"]) == (first.score1, first.score2)
    short = " ".join(texts[first.response_id_1].split())
    assert col["response (a)"] == (short if len(short) <= 60 else short[:59] + "…")
    assert all(len(v) <= 60 for v in ex.loc[["instruction", "response (a)", "response (b)"]].to_numpy().ravel())
    assert consistency.opposite_preferences(pairs.iloc[:0], ratings, rankings).empty
    words = consistency.response_words(ratings, rankings)
    assert words[first.response_id_1] == len(texts[first.response_id_1].split())


def test_rated_differently_lists_each_response_with_its_scores_in_order():
    ratings = pd.DataFrame({"instruction_id": ["i", "i", "i", "i", "j"], "response_id": ["r1", "r2", "r1", "r2", "r3"],
                            "instruction": ["Add."] * 4 + ["Sort."], "response": ["3", "4", "3", "4", "x"],
                            "score": [6, 5, 5, 5, None]})
    twice = consistency.rated_differently(ratings)
    assert twice.to_dict("records") == [{"instruction": "Add.", "response": "3", "scores": "6, 5"}]
    assert consistency.rated_differently(ratings.drop(columns="response_id")).empty
    vendored = consistency.rated_differently(sfio.read_ratings(SAMPLE_RATINGS))
    assert sorted(vendored["scores"]) == ["5, 4", "6, 5"]  # the paper's sample: two responses rated twice


def test_disagreement_kinds_add_up_and_summary():
    rep = fast_from_csv(SAMPLE_RATINGS, SAMPLE_RANKINGS, bootstrap=50)
    assert rep.opposite_rate + rep.one_side_equal_rate == pytest.approx(1 - rep.consistency)
    s = rep.summary()
    assert s.loc["pairs compared", "value"] == rep.n_compared and isinstance(s.loc["pairs compared", "value"], int)
    lo, hi = rep.ci["consistency"]
    assert s.loc["disagreement", "ci_low"] == pytest.approx(1 - hi, abs=1e-4)


def test_plots_render(tmp_path):
    from sflib import plots

    rep = fast_from_csv(SAMPLE_RATINGS, SAMPLE_RANKINGS, bootstrap=50)
    ratings, rankings = consistency.load_vendored("evaluation")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", consistency.ConsistencyWarning)
        table = consistency.compare_annotators({"sample": rep, "evaluation": (ratings, rankings)}, bootstrap=50)
    assert set(table.attrs["reports"]["evaluation"].by_source["source"]) == {"helpful_base"}
    figs = {"m": plots.plot_consistency_matrices(rep),
            "g": plots.plot_consistency_by_gap(rep.by_gap, overall=rep.consistency),
            "a": plots.plot_consistency_by_group(table, label="annotator", reference=0.4)}
    for name, fig in figs.items():
        paths = plots.save_figure(fig, name, tmp_path)
        assert all(p.stat().st_size > 1000 for p in paths)
        plots.plt.close(fig)
    assert len(figs["m"].axes) == 2 and len(figs["g"].axes) == 2


def test_instruction_bootstrap_widens_when_agreement_clusters():
    """20 instructions x 10 pairs; half the instructions agree on every pair, half on none."""
    rows_r, rows_k = [], []
    for i in range(20):
        for j in range(5):
            rows_r.append((f"task {i}", "", f"r{j}", j + 1))  # response j scores j+1: response1 < response2 below
        for a in range(5):
            for b in range(a + 1, 5):
                rows_k.append((f"task {i}", "", f"r{a}", f"r{b}", "b" if i < 10 else "a"))
    ratings, rankings = _frames(rows_r, rows_k)
    pairs_rep = consistency.report(ratings, rankings, bootstrap=2000, seed=1)
    inst_rep = consistency.report(ratings, rankings, bootstrap=2000, seed=1, resample="instructions")
    assert pairs_rep.consistency == inst_rep.consistency == 0.5
    width = {r.resample: r.ci["consistency"][1] - r.ci["consistency"][0] for r in (pairs_rep, inst_rep)}
    assert width["instructions"] > 2 * width["pairs"], width
    lo, hi = inst_rep.ci["consistency"]
    assert lo <= 0.5 <= hi
    again = consistency.report(ratings, rankings, bootstrap=2000, seed=1, resample="instructions")
    assert again.ci == inst_rep.ci
    with pytest.raises(ValueError, match="resample must be one of"):
        consistency.report(ratings, rankings, resample="responses")


# ----------------------------------------------------------------------------- soft verdicts

def _soft_frames():
    """One instruction, 4 responses; hard scores tie a lot, the expected scores do not."""
    ratings = data.add_ids(pd.DataFrame(
        [("t", "", "r1", 5, 5.4), ("t", "", "r2", 5, 4.9), ("t", "", "r3", 4, 4.2), ("t", "", "r4", 6, None)],
        columns=["instruction", "input", "response", "score", "expected_score"]))
    rankings = data.add_ids(pd.DataFrame(
        [("t", "", "r1", "r2", "equal", 0.7),   # soft: ratings a (5.4 > 4.9), rankings a (p_a .7): agree
         ("t", "", "r2", "r3", "a", 0.4),       # ratings a (4.9 > 4.2), rankings b: disagree
         ("t", "", "r3", "r1", "b", 0.1),       # ratings b, rankings b: agree
         ("t", "", "r4", "r1", "a", None),      # r4 falls back to 6 (> 5.4): a; p_a falls back to 'a': agree
         ("t", "", "r2", "r1", "equal", 0.5)],  # ratings b, rankings equal (p_a exactly .5): disagree
        columns=["instruction", "input", "response1", "response2", "decision", "p_a"]))
    return ratings, rankings


def test_soft_consistency_uses_signs_of_expected_scores_and_p_a():
    ratings, rankings = _soft_frames()
    soft = consistency.report(ratings, rankings, bootstrap=0, verdicts="soft")
    hard = consistency.report(ratings, rankings, bootstrap=0)
    assert soft.verdicts == "soft" and hard.verdicts == "hard"
    assert list(soft.pairs["ratings_decision"]) == ["a", "a", "b", "a", "b"]
    assert list(soft.pairs["rankings_decision"]) == ["a", "b", "b", "a", "equal"]
    assert soft.consistency == pytest.approx(3 / 5)
    # hard: ratings equal, a, b, a, equal vs equal, a, b, a, equal -> all agree
    assert hard.consistency == 1.0
    assert soft.verdict_info["ratings"] == {"verdicts": "soft", "n_soft": 3, "n_fallback": 1,
                                            "note": "1 ratings without 'expected_score' use their hard score"}
    assert soft.verdict_info["rankings"]["n_fallback"] == 1 and len(soft.notes) == 2
    assert soft.to_dict()["verdicts"] == "soft" and "soft verdicts" in soft.headline()
    assert list(soft.pairs["gap"]) == [0, 1, 1, 1, 0]        # |difference| rounded


def test_soft_without_the_columns_falls_back_to_hard_with_a_note():
    ratings, rankings = _soft_frames()
    rep = consistency.report(ratings.drop(columns="expected_score"), rankings.drop(columns="p_a"),
                             bootstrap=0, verdicts="soft")
    hard = consistency.report(ratings, rankings, bootstrap=0)
    assert rep.verdicts == "hard" and rep.matrix.equals(hard.matrix)
    assert any("no 'expected_score' column" in n for n in rep.notes)
    assert any("no 'p_a' column" in n for n in rep.notes)
    mixed = consistency.report(ratings, rankings.drop(columns="p_a"), bootstrap=0, verdicts="soft")
    assert mixed.verdicts == "soft ratings, hard rankings"
    with pytest.raises(ValueError, match="verdicts must be"):
        consistency.report(ratings, rankings, verdicts="fuzzy")


def test_soft_values_off_their_range_are_a_clear_error():
    ratings, rankings = _soft_frames()
    bad = rankings.copy()
    bad.loc[2, "p_a"] = 1.3
    with pytest.raises(DataError, match=r"row 3.*p_a 1.3 is not a number in \[0, 1\]"):
        consistency.report(ratings, bad, verdicts="soft")
    bad = ratings.copy()
    bad.loc[0, "expected_score"] = 9.5
    with pytest.raises(DataError, match=r"row 1.*expected_score 9.5"):
        consistency.report(bad, rankings, verdicts="soft")


def test_cli_soft_verdicts(tmp_path, capsys):
    ratings, rankings = _soft_frames()
    sfio.write_table(ratings, tmp_path / "ratings.jsonl")
    sfio.write_table(rankings, tmp_path / "rankings.jsonl")
    out = tmp_path / "r.json"
    assert cli.main(["consistency", "--ratings", str(tmp_path / "ratings.jsonl"), "--rankings",
                     str(tmp_path / "rankings.jsonl"), "--bootstrap", "0", "--verdicts", "soft",
                     "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "agree on 60.0%" in printed and "note: 1 ratings without 'expected_score'" in printed
    assert json.loads(out.read_text())["verdict_info"]["rankings"]["n_soft"] == 4
