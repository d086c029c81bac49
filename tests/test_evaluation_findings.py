"""Stage 07's findings on small hand-made results whose answers are worked out by hand: Wilson intervals
(never zero-width), win rate excluding ties, the paired protocol effect (bootstrap + exact sign test),
LC "not identifiable", small-n flags, the by-dataset figure left out when it repeats the overall one."""
import math

import numpy as np
import pandas as pd
import pytest

from sflib.evaluation import findings as F
from sflib.evaluation.lc_winrate import LCResult
from sflib.evaluation.protocols import protocol_effect, protocol_effects
from sflib.evaluation.winrate import _result, excluding_ties, wilson_percent


def result(protocol, wins: dict, policy="P", dataset="d1", missing=()):
    """A WinRate from {key: win value}; ``missing`` keys are in the evaluation set without a judgment."""
    keys = list(wins) + list(missing)
    items = pd.DataFrame({"key": keys, "instruction": keys, "dataset": dataset,
                          "win": [wins.get(k, np.nan) for k in keys],
                          "reason": ["" if k in wins else "judgment failed" for k in keys]})
    return _result(protocol, items, policy=policy, reference="R", judge="j", ignored={}, n_boot=200, seed=0)


def test_wilson_is_never_zero_width():
    low, high = wilson_percent(2, 2)            # 2 of 2: the old 1.96·SEM printed 100 ± 0
    assert high == pytest.approx(100) and low == pytest.approx(34.238, abs=1e-3)
    low, high = wilson_percent(0, 11)           # 0 of 11 ("0.0 0.0" before)
    assert low == pytest.approx(0, abs=1e-9) and high == pytest.approx(25.88, abs=0.01)
    assert all(math.isnan(v) for v in wilson_percent(0, 0))


def test_winrate_carries_wilson_and_excluding_ties():
    r = result("rating", {"a": 1, "b": 1, "c": 0.5, "d": 0})  # W/T/L 2/1/1 -> 62.5 with ties as 0.5
    assert r.winrate == pytest.approx(62.5)
    assert (r.wilson_low, r.wilson_high) == pytest.approx(wilson_percent(2.5, 4))
    assert r.winrate_excl_ties == pytest.approx(200 / 3)     # 2 / (2 + 1)
    assert r.excl_ties_interval == pytest.approx(wilson_percent(2, 3))
    assert math.isnan(excluding_ties(0, 0)[0])               # all ties: no number
    ties = result("rating", {"a": 0.5, "b": 0.5})
    assert ties.winrate == 50 and math.isnan(ties.winrate_excl_ties)


def test_protocol_effect_is_paired_on_common_instructions():
    rating = result("rating", {"k1": 1, "k2": 0.5, "k3": 0, "k4": 1})
    ranking = result("ranking", {"k2": 0, "k3": 0, "k4": 1, "k5": 1})
    e = protocol_effect(rating, ranking, n_boot=200)
    # common k2, k3, k4: d = 0.5, 0, 0 -> mean 16.7 points; the rating protocol favoured 1, ranking 0
    assert e.n == 3 and e.only_rating == 1 and e.only_ranking == 1
    assert e.rating_winrate == pytest.approx(50.0) and e.ranking_winrate == pytest.approx(100 / 3)
    assert e.diff == pytest.approx(50 / 3)
    assert (e.rating_better, e.ranking_better, e.same) == (1, 0, 2)
    assert e.p_sign == pytest.approx(1.0)                     # binomtest(1, 1): two-sided p = 1
    assert e.diff_low <= e.diff <= e.diff_high
    assert e.rating_excl_ties == pytest.approx(50.0)          # k3 lost, k4 won (k2 a tie)
    assert e.ranking_excl_ties == pytest.approx(100 / 3)


def test_protocol_effect_sign_test_and_degenerate_cases():
    keys = [f"k{i}" for i in range(8)]
    rating = result("rating", {k: 1 for k in keys})
    ranking = result("ranking", {k: 0 for k in keys})
    e = protocol_effect(rating, ranking, n_boot=200)
    assert e.diff == 100 and e.rating_better == 8 and e.p_sign == pytest.approx(2 * 0.5 ** 8)
    one = protocol_effect(result("rating", {"a": 1}), result("ranking", {"a": 1}), n_boot=200)
    assert one.n == 1 and one.same == 1 and math.isnan(one.p_sign)            # n = 1, all equal: no test
    none = protocol_effect(result("rating", {"a": 1}), result("ranking", {"b": 0}), n_boot=200)
    assert none.n == 0 and math.isnan(none.diff) and none.only_rating == 1 and none.only_ranking == 1
    with pytest.raises(ValueError):
        protocol_effect(ranking, rating)
    table = protocol_effects([rating, ranking, result("rating", {"a": 1}, policy="Q")], n_boot=200)
    assert list(table["policy"]) == ["P"]                     # Q has no ranking result: nothing to pair


def test_estimates_flag_small_n_and_unidentifiable_lc():
    r = result("ranking", {"a": 1}, missing=["b", "c"])
    est = F.winrate_estimates([r], min_n=10)
    main = est[0]
    assert main.n == 1 and main.value == 100 and main.low < 100 and "no verdict" in main.note
    assert r.n + r.n_dropped == r.n_items == 3
    flat = r.with_lc(LCResult(50.0, 0.0, 40, coef={"np.tanh(std_delta_len)": 0.0, "not_gamed": 0.0}, C=1e-4))
    assert not flat.lc_identifiable and math.isnan(flat.lc_winrate) and flat.summary()["lc_winrate"] is None
    lc = F.winrate_estimates([flat])[2]
    assert math.isnan(lc.value) and "not identifiable" in lc.note
    fitted = r.with_lc(LCResult(23.6, 1.0, 40, coef={"np.tanh(std_delta_len)": 0.7}, C=1.0))
    assert fitted.lc_winrate == pytest.approx(23.6) and F.winrate_estimates([fitted])[2].value == pytest.approx(23.6)


def test_by_dataset_drops_empty_and_knows_when_it_repeats_the_overall():
    one = [result("rating", {"a": 1, "b": 0}, dataset="d1"), result("ranking", {"a": 1}, dataset="d1")]
    t = F.by_dataset(one, min_n=10)
    assert set(t["dataset"]) == {"d1"} and F.repeats_overall(t) and t["small_n"].all()
    two = result("rating", {"a": 1}, dataset="d1")
    other = result("rating", {"b": 0}, dataset="d2")
    both = pd.concat([F.by_dataset([two]), F.by_dataset([other])])
    assert not F.repeats_overall(both)
    empty = F.by_dataset([result("rating", {}, missing=["a"])])
    assert len(empty) == 0


def test_winrate_table_has_both_rates_and_the_wilson_interval():
    t = F.winrate_table([result("rating", {"a": 1, "b": 0.5})], min_n=2)
    row = t.iloc[0]
    assert row["winrate"] == pytest.approx(75) and row["winrate_excl_ties"] == pytest.approx(100)
    assert row["wilson_low"] < 75 < row["wilson_high"] and not row["small_n"]
    assert len(F.winrate_table([])) == 0
