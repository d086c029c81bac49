"""Stage 05's findings on hand-made numbers: accuracy beside chance (Wilson), MSE beside the constant
predictor (the ratings RM that predicts ~0.69 for everything must be seen to lose to the mean), Spearman's
interval, and the duplicate rule shared with notebooks 02/04 (first rating of a response kept)."""
import math

import numpy as np
import pandas as pd
import pytest

from sflib.rm.stage import _clean
from sflib.rm import findings as F
from sflib.rm.stage import is_demo, record


def test_accuracy_beside_chance():
    e = F.accuracy_estimate("rankings RM", 0.5, 10)
    assert e.value == 50 and e.low < 50 < e.high and "at chance" in e.note
    good = F.accuracy_estimate("x", 1.0, 30)               # 30 of 30: Wilson 88.6–100, above chance
    assert good.low == pytest.approx(88.65, abs=0.01) and good.high == pytest.approx(100) and "better" in good.note
    one = F.accuracy_estimate("x", 1.0, 1)                  # n = 1: never a zero-width interval
    assert one.low < 25 and "at chance" in one.note
    none = F.accuracy_estimate("x", float("nan"), 0)
    assert math.isnan(none.value) and none.n == 0


def test_mse_beside_the_constant_predictor():
    # training targets 0, 1 -> constant 0.5; held-out targets 0 and 1, the RM predicts 0.7 for both
    held = pd.DataFrame({"target": [0.0, 1.0], "predicted": [0.7, 0.7]})
    m = F.mse_against_constant([0.0, 1.0], held, n_boot=200)
    assert m["constant"] == 0.5
    assert m["mse"] == pytest.approx((0.49 + 0.09) / 2)       # 0.29
    assert m["mse_constant"] == pytest.approx(0.25)
    assert m["diff"] == pytest.approx(0.04)                    # the RM is worse than the mean
    assert m["diff_low"] <= m["diff"] <= m["diff_high"]
    # all-equal held-out targets: the constant is exact when it equals them
    same = F.mse_against_constant([0.5, 0.5], pd.DataFrame({"target": [0.5] * 3, "predicted": [0.4] * 3}), n_boot=50)
    assert same["mse_constant"] == 0 and same["mse"] == pytest.approx(0.01) and same["diff_low"] == pytest.approx(0.01)
    empty = F.mse_against_constant([0.5], pd.DataFrame(columns=["target", "predicted"]))
    assert empty["n"] == 0 and math.isnan(empty["mse"])
    rankings_rm = F.mse_against_constant([0.5], pd.DataFrame({"target": [0.2], "predicted": [np.nan]}))
    assert math.isnan(rankings_rm["diff"])                     # a rankings RM has no absolute scale


def test_spearman_interval():
    lo, hi = F.spearman_interval(0.5, 28)                      # z = 0.549, SE = 1.06 / 5 = 0.212
    assert lo == pytest.approx(math.tanh(0.5493 - 1.96 * 0.212), abs=1e-3)
    assert hi == pytest.approx(math.tanh(0.5493 + 1.96 * 0.212), abs=1e-3)
    assert all(math.isnan(v) for v in F.spearman_interval(0.9, 3))
    assert all(math.isnan(v) for v in F.spearman_interval(float("nan"), 30))


def test_ratings_are_cleaned_by_the_one_counting_rule():
    # a response rated twice (6 then 5) keeps 6; a missing score is left out; 4 rows -> 2 kept
    df = pd.DataFrame({"instruction": ["i", "i", "i", "j"], "input": "", "response": ["r", "r", "s", "t"],
                       "score": [6, 5, None, 3]})
    kept, counts = _clean(df)
    assert list(kept["score"]) == [6, 3]
    assert {k: counts[k] for k in ("rows", "without_score", "duplicates", "conflicting", "used")} == \
        {"rows": 4, "without_score": 1, "duplicates": 1, "conflicting": 1, "used": 2}
    assert counts["exclusions"]["duplicate rating, different score"] == 1
    rankings = pd.DataFrame({"decision": ["a", "equal", None, "b"]})
    runs, notes = {"ratings": None, "rankings": None}, {"ratings": "too few", "rankings": "too few"}
    manifest, metrics = record(df, rankings, counts, runs, notes, {"seed": 0}, 1, pd.DataFrame())
    assert manifest["reasons"]["ratings: duplicate rating of a response (first kept)"] == 1
    assert manifest["reasons"]["ratings: no valid score"] == 1
    assert manifest["reasons"]["rankings: tie, left out"] == 1 and manifest["reasons"]["rankings: no decision"] == 1
    assert manifest["valid"] == 2 + 2 and manifest["invalid"] == 2 and "no reward model" in manifest["reason"]
    assert metrics["ratings_cleaning"]["used"] == 2


def test_demo_label():
    assert is_demo("minilm") and is_demo("smollm2") and is_demo("meta-llama/Llama-3.2-1B", quick=True)
    assert not is_demo("meta-llama/Llama-3.2-1B")
