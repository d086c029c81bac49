"""Length-controlled win rate (AlpacaEval 2's GLM) checked against an independent computation.

AlpacaEval's own ``get_length_controlled_winrate`` cannot run here: it needs scikit-learn and downloads
``df_gamed.csv`` / ``instruction_difficulty.csv`` from the Hugging Face hub. So the checks rebuild their
formula independently on the same preferences: the design matrix written out by hand
(``np.tanh((len_1 − len_2) / SD)``, difficulty, constant; no intercept), liblinear's L1 objective
``|w|_1 + C·Σ soft log-loss`` minimised by a different optimiser (Nelder–Mead on the non-smooth
objective), and the prediction with the length term set to 0, averaged ×100.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from sflib import evaluation as ev
from sflib.evaluation import lc_winrate as lc


def _liblinear_objective(w, X, p, C):
    z = X @ w
    return np.abs(w).sum() + C * np.sum(p * np.log1p(np.exp(-z)) + (1 - p) * np.log1p(np.exp(z)))


def _independent_lc(pref, len_ref, len_pol, C, difficulty=None):
    """AlpacaEval's formula on the same preferences, written out separately (C given)."""
    delta = np.asarray(len_ref, float) - np.asarray(len_pol, float)
    cols = [np.tanh(delta / pd.Series(delta).std())]
    if difficulty is not None:
        cols.append(np.asarray(difficulty, float))
    cols.append(np.ones(len(pref)))
    X = np.column_stack(cols)
    w = minimize(_liblinear_objective, np.zeros(X.shape[1]), args=(X, pref, C), method="Nelder-Mead",
                 options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 40000, "maxfev": 40000}).x
    X0 = X.copy()
    X0[:, 0] = 0.0
    pred = 1 / (1 + np.exp(-(X0 @ w)))
    return 100 * pred.mean(), w


def _length_biased(n=300, seed=0, bias=1.5, base=0.0, difficulty=None):
    """Policy/reference outputs whose only difference that matters to the judge is the length (and,
    when given, the instruction's difficulty)."""
    rng = np.random.default_rng(seed)
    len_ref = rng.integers(200, 1200, n).astype(float)
    len_pol = len_ref * rng.choice([0.5, 0.8, 1.0, 1.5, 2.5], n)
    z = base + bias * np.tanh((len_pol - len_ref) / 400) + (0 if difficulty is None else difficulty)
    pref = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    pref[rng.random(n) < 0.15] = 0.5      # some ties
    return pref, len_ref, len_pol


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_an_independent_computation_of_alpacaevals_formula(seed):
    pref, len_ref, len_pol = _length_biased(seed=seed)
    ours = lc.length_controlled(pref, len_ref, len_pol)
    assert ours.glm == "length_controlled_minimal" and ours.n == len(pref)
    theirs, w = _independent_lc(pref, len_ref, len_pol, ours.C)
    assert ours.lc_winrate == pytest.approx(theirs, abs=1e-3)
    assert list(ours.coef.values()) == pytest.approx(list(w), abs=1e-3)
    # the standard error is the SEM of the predictions, which are all equal without a difficulty term
    assert ours.lc_standard_error == pytest.approx(0.0, abs=1e-9)


def test_difficulty_term_matches_independent_computation():
    difficulty = np.random.default_rng(9).normal(0, 1.5, 300)
    pref, len_ref, len_pol = _length_biased(seed=5, difficulty=difficulty)
    ours = lc.length_controlled(pref, len_ref, len_pol, difficulty)
    assert ours.glm == "length_controlled_noreg" and list(ours.coef)[1] == "instruction_difficulty"
    theirs, _ = _independent_lc(pref, len_ref, len_pol, ours.C, difficulty)
    assert ours.lc_winrate == pytest.approx(theirs, abs=1e-3)
    assert ours.lc_standard_error > 0      # predictions now vary with the difficulty
    assert ours.lc_standard_error == pytest.approx(100 * pd.Series(ours.predicted).sem())


def test_cross_validation_chooses_c_like_logisticregressioncv():
    """C comes from LogisticRegressionCV's default grid; an uninformative sample gets the strongest
    penalty (all-zero weights, 50%), an informative one a weak penalty."""
    pref, len_ref, len_pol = _length_biased(n=400, bias=3.0)
    assert lc.length_controlled(pref, len_ref, len_pol).C in set(np.logspace(-4, 4, 10)[4:])
    noise = lc.length_controlled(np.tile([0.0, 1.0], 10), np.arange(20.0), np.arange(20.0)[::-1])
    assert noise.C == pytest.approx(1e-4) and noise.lc_winrate == pytest.approx(50.0)
    assert "every weight is 0" in noise.note


def test_length_bias_is_removed():
    """A judge that only rewards length: the raw win rate is far from 50, the LC one near 50."""
    pref, len_ref, len_pol = _length_biased(n=2000, bias=2.5, seed=3)
    longer = len_pol > len_ref
    # make the policy mostly longer, as a verbose policy would be
    keep = longer | (np.arange(len(pref)) % 4 == 0)
    raw = 100 * pref[keep].mean()
    res = lc.length_controlled(pref[keep], len_ref[keep], len_pol[keep])
    assert raw > 65
    assert abs(res.lc_winrate - 50) < 6
    assert res.coef["np.tanh(std_delta_len)"] < 0   # longer policy (reference − policy < 0) -> preferred


def test_no_length_variation_and_too_few():
    pref = [1, 0, 1, 1, 0.5, 1, 1, 1, 1, 1] * 5
    res = lc.length_controlled(pref, [100] * 50, [100] * 50)
    assert "length term is 0" in res.note
    # intercept only, L1: sign(w) + C·n·(σ(w) − mean) = 0, so σ(w) = mean − 1/(C·n) (or w = 0 when that is < 0.5)
    closed = max(np.mean(pref) - 1 / (res.C * len(pref)), 0.5)
    assert res.lc_winrate == pytest.approx(100 * closed, abs=1e-4)
    small = lc.length_controlled([1, 0, 1], [1, 2, 3], [3, 2, 1])
    assert math.isnan(small.lc_winrate) and "too few" in small.note


# ----------------------------------------------------------------------------- on results, both protocols

def _items(n=60, seed=0):
    rng = np.random.default_rng(seed)
    ref = ["r" * int(x) for x in rng.integers(50, 500, n)]
    pol = ["p" * int(x) for x in rng.integers(50, 900, n)]
    return pd.DataFrame({"instruction": [f"q{i}" for i in range(n)], "reference_output": ref, "policy_output": pol})


def test_both_protocols_carry_the_lc_winrate():
    items = _items(200)
    rng = np.random.default_rng(4)
    longer = (items["policy_output"].str.len() > items["reference_output"].str.len()) & (rng.random(200) < 0.8)
    decisions = pd.DataFrame({"instruction": items["instruction"], "decision": np.where(longer, "b", "a")})
    decisions.loc[::7, "decision"] = "equal"
    r_rank = ev.winrate_from_rankings(decisions, items=items)
    pol = pd.DataFrame({"instruction": items["instruction"], "score": np.where(longer, 6, 3)})
    ref = pd.DataFrame({"instruction": items["instruction"], "score": 4})
    r_rate = ev.winrate_from_ratings(pol, ref, items=items)
    for r in (r_rank, r_rate):
        counted = r.items.dropna(subset=["win"])
        direct = lc.length_controlled(counted["win"], counted["reference_output"].str.len(),
                                      counted["policy_output"].str.len())
        assert r.lc_winrate == pytest.approx(direct.lc_winrate)
        assert r.summary()["lc_winrate"] == pytest.approx(r.lc_winrate)
        assert "length-controlled" in str(r)
        assert r.lc_winrate < r.winrate            # the wins came with length
    table = ev.results_table([r_rank, r_rate])
    assert list(table["lc_winrate"]) == pytest.approx([r_rank.lc_winrate, r_rate.lc_winrate])


def test_extreme_change_is_flagged_as_alpacaeval_does():
    """A judge whose verdict is exactly 'the longer one wins' separates the data perfectly; AlpacaEval
    warns when the LC win rate moves that far from the raw one, and so do we (in the note)."""
    items = _items(60)
    longer = items["policy_output"].str.len() > items["reference_output"].str.len()
    r = ev.winrate_from_rankings(pd.DataFrame({"instruction": items["instruction"],
                                               "decision": np.where(longer, "b", "a")}), items=items)
    assert "very different from the raw one" in r.lc.note
    assert lc.is_extreme_change(20, 9) and lc.is_extreme_change(50, 63) and not lc.is_extreme_change(50, 60)


def test_without_output_texts_lc_is_nan_with_a_reason():
    r = ev.winrate_from_rankings(["b", "a", "equal"] * 5)
    assert math.isnan(r.lc_winrate) and "no output texts" in r.lc.note
    assert r.summary()["lc_winrate"] is None


def test_instruction_difficulty_leaves_the_policy_out():
    items = _items(80, seed=1)
    rng = np.random.default_rng(2)
    dec_a = pd.DataFrame({"instruction": items["instruction"], "decision": rng.choice(["a", "b", "equal"], 80)})
    dec_b = pd.DataFrame({"instruction": items["instruction"], "decision": rng.choice(["a", "b"], 80)})
    a = ev.winrate_from_rankings(dec_a, items=items, policy="A")
    b = ev.winrate_from_rankings(dec_b, items=items, policy="B")
    a2, b2 = lc.with_instruction_difficulty([a, b])
    assert a2.lc.glm == b2.lc.glm == "length_controlled_noreg"
    assert a.lc.glm == "length_controlled_minimal"            # alone: no difficulty to learn
    # A's difficulty comes from B only: logit((p_B + 0.5) / 2)
    d = lc.instruction_difficulty([b.items])
    expected = np.log(((b.items["win"] + 0.5) / 2) / (1 - (b.items["win"] + 0.5) / 2))
    assert d.loc[b.items["key"]].to_numpy() == pytest.approx(expected.to_numpy())
    flipped = dec_a.assign(decision=dec_a["decision"].map({"a": "b", "b": "a", "equal": "equal"}))
    a_flipped = ev.winrate_from_rankings(flipped, items=items, policy="A")
    assert lc.with_instruction_difficulty([a_flipped, b])[1].lc.lc_winrate == pytest.approx(b2.lc.lc_winrate)
    # the refitted number is AlpacaEval's formula with that difficulty
    counted = a.items.dropna(subset=["win"])
    direct = lc.length_controlled(counted["win"], counted["reference_output"].str.len(),
                                  counted["policy_output"].str.len(), counted["key"].map(d))
    assert a2.lc.lc_winrate == pytest.approx(direct.lc_winrate)


def test_winrate_json_reports_lc_winrate(tmp_path):
    from sflib.cli import main

    v = ev.vendored_paths()
    out = tmp_path / "w.json"
    assert main(["winrate", "--policy", str(v["ratings_rm"]), "--reference", str(v["reference"]),
                 "--policy-ratings", str(v["ratings_rm_ratings"]), "--reference-ratings", str(v["reference_ratings"]),
                 "--rankings", str(v["ratings_rm_rankings"]), "--n-boot", "50", "--json", str(out)]) == 0
    res = next(iter(json.loads(out.read_text())["policies"].values()))["results"]
    for proto in ("rating", "ranking"):
        assert "lc_winrate" in res[proto] and res[proto]["lc"]["n"] == res[proto]["n"]
    assert 0 < res["ranking"]["lc_winrate"] < 100


def test_with_difficulty_refits_every_evaluation_from_the_others():
    items = _items(80, seed=3)
    rng = np.random.default_rng(5)
    evals = {}
    for name in ("A", "B"):
        dec = pd.DataFrame({"instruction": items["instruction"], "decision": rng.choice(["a", "b", "equal"], 80)})
        res = {"ranking": ev.winrate_from_rankings(dec, items=items, policy=name)}
        evals[name] = ev.Evaluation(name, "reference", "j", None, res)
    out = ev.with_difficulty(evals)
    assert all(e.results["ranking"].lc.glm == "length_controlled_noreg" for e in out.values())
    assert all(e.results["ranking"].lc.glm == "length_controlled_minimal" for e in evals.values())  # untouched
    assert out["A"].lc_winrates["ranking"] == pytest.approx(out["A"].results["ranking"].lc_winrate, nan_ok=True)
    single = ev.with_difficulty({"A": evals["A"]})
    assert single["A"].results["ranking"].lc.lc_winrate == evals["A"].results["ranking"].lc.lc_winrate


def test_original_vs_ours_table():
    v = ev.vendored_paths()
    ours = ev.winrates_from_recorded(v["ratings_rm"], v["reference"], policy_ratings=v["ratings_rm_ratings"],
                                     reference_ratings=v["reference_ratings"], rankings=v["ratings_rm_rankings"],
                                     n_boot=50)
    t = ev.original_vs_ours(v["reference_ratings"], v["ratings_rm_ratings"], v["ratings_rm_rankings"],
                            {"ours (from the CSVs)": ours})
    assert list(zip(t["protocol"], t["computation"])) == [
        ("rating", "original rules"), ("rating", "ours (from the CSVs)"),
        ("ranking", "original rules"), ("ranking", "ours (from the CSVs)")]
    by = t.set_index(["protocol", "computation"])
    assert by.loc[("rating", "original rules"), "winrate"] == pytest.approx(ours["rating"].winrate)
    assert by.loc[("ranking", "ours (from the CSVs)"), "lc_winrate"] == pytest.approx(ours["ranking"].lc_winrate)
    assert by.loc[("rating", "original rules"), "n"] == ours["rating"].n
    assert pd.isna(by.loc[("ranking", "original rules"), "lc_winrate"])   # the original had none
