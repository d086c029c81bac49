"""Stage 06's findings on hand-made selections: agreement of the two RMs beside chance 1/m (Wilson), the
reward gain of best-of-n over a random sample, what notebook 07 gets from a seeded study."""
import math

import pandas as pd
import pytest

from sflib.bon import findings as F
from sflib.bon.curves import agreement


def test_same_pick_beside_chance():
    # best of 4 on 10 instructions: the two RMs agree on 3 -> 30%, Wilson 10.8–60.3, chance 25%
    table = pd.DataFrame({"m": [1, 4], "same_sample": [1.0, 0.3], "same_text": [1.0, 0.3], "chance": [1.0, 0.25],
                          "n_instructions": [10, 10]})
    e = F.same_pick_estimate(table)
    assert e.value == pytest.approx(30) and e.n == 10
    assert e.low == pytest.approx(10.78, abs=0.01) and e.high == pytest.approx(60.32, abs=0.01)
    assert "chance 25.0%" in e.note and "within chance" in e.note
    assert F.same_pick_estimate(pd.DataFrame()) is None
    all_same = F.same_pick_estimate(table.assign(same_sample=[1.0, 1.0]))
    assert all_same.high == pytest.approx(100) and all_same.low < 100 and "differs" in all_same.note


def test_agreement_table_from_selections():
    a = pd.DataFrame({"m": [2, 2], "instruction_id": ["i", "j"], "sample": [0, 1], "response": ["x", "y"]})
    b = pd.DataFrame({"m": [2, 2], "instruction_id": ["i", "j"], "sample": [0, 0], "response": ["x", "x"]})
    t = agreement(a, b)
    assert t.loc[0, "same_sample"] == 0.5 and t.loc[0, "chance"] == 0.5
    e = F.same_pick_estimate(t)
    assert e.value == 50 and e.n == 2


def test_gain_of_best_of_n_over_a_random_sample():
    scored = pd.DataFrame({"instruction_id": ["i", "i", "j", "j"], "reward": [1.0, 3.0, 2.0, 2.0]})
    selected = pd.DataFrame({"instruction_id": ["i", "j"], "reward": [3.0, 2.0]})
    e = F.gain_estimate(scored, selected, "ratings")
    assert e.value == pytest.approx(0.5)         # i: 3 - 2 = 1; j: all equal -> 0
    assert e.n == 2 and e.low <= 0.5 <= e.high
    empty = F.gain_estimate(scored.iloc[:0], selected.iloc[:0], "ratings")
    assert empty.n == 0 and math.isnan(empty.value)


def test_released_table_counts_what_07_gets():
    ev = pd.DataFrame({"instruction": ["a", "b"]})
    released = {"ratings": pd.DataFrame({"instruction": ["a", "c"], "output": ["one two", "x"], "generator": "g"}),
                "reference": pd.DataFrame(columns=["instruction", "output", "generator"])}
    t = F.released_table(released, ev)
    assert t.loc["ratings", "outputs"] == 2 and t.loc["ratings", "in the evaluation set"] == 1
    assert t.loc["ratings", "mean words"] == 1.5 and t.loc["reference", "outputs"] == 0
