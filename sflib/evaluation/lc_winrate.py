"""Length-controlled win rate — AlpacaEval 2's method, offline, under both protocols.

Ported from AlpacaEval's ``src/alpaca_eval/metrics/glm_winrate.py`` (``get_length_controlled_winrate``,
``_get_featurized_data``, ``fit_LogisticRegressionCV``; tatsu-lab/alpaca_eval, Apache-2.0):

- the preference of each instruction is P(policy better) in [0, 1] — AlpacaEval's ``preference − 1``
  with the reference as ``output_1`` and the policy as ``output_2``. Here: the win values of a
  :class:`sflib.evaluation.winrate.WinRate` (rating protocol 1 / 0.5 / 0; ranking protocol 1 / 0.5 / 0 for
  b / equal / a, or 1 − p_a with soft verdicts);
- features: ``np.tanh(std_delta_len)`` with ``std_delta_len = (len(reference) − len(policy)) / SD`` in
  characters (SD with ddof=1 over the instructions counted), the instruction difficulty, and a constant
  (``not_gamed_baseline.astype(float)``, always 1 here); no intercept beyond it;
- a logistic regression on soft labels (each row is duplicated as y=1 with weight p and y=0 with
  weight 1 − p), L1-penalised like liblinear (``|w|_1 + C · Σ weighted log-loss``), C chosen among
  ``np.logspace(-4, 4, 10)`` (LogisticRegressionCV's default grid) by 5-fold cross-validated log-loss
  with folds of whole instructions, then refitted on everything with that C;
- LC win rate = mean over the instructions of the model's prediction with ``std_delta_len = 0`` ×100,
  and its standard error the SEM of those predictions ×100 (AlpacaEval's ``lc_standard_error``).

What differs, and why: AlpacaEval's default (``length_controlled_v1``) regularises towards verbose /
concise versions of its own baseline (``regularize_to_baseline_lambda=0.2``) and takes the
instruction difficulty from files downloaded from a model hub at run time; neither exists offline for
our reference. So the formula is ``length_controlled_v1`` without that regularisation (AlpacaEval's
``length_controlled_noreg``) when a difficulty is available, else ``length_controlled_minimal``. The
instruction difficulty is estimated from the data at hand, as AlpacaEval's notebooks initialise it
(the logit of the mean preference of an instruction over the evaluated models), *leaving the
evaluated policy out* so that its own verdicts cannot leak into the term that is kept:
``logit((Σ p + 0.5) / (k + 1))`` over the k other policies judged on that instruction against the same
reference under the same protocol (0 where none is). The optimiser is scipy's L-BFGS-B on the L1
problem (no scikit-learn here); the folds are round-robin over instructions (GroupKFold's assignment
of equal-size groups, up to their order).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit

FORMULAS = {
    "length_controlled_noreg":
        "np.tanh(std_delta_len) + instruction_difficulty + not_gamed_baseline.astype(float) - 1",
    "length_controlled_minimal": "np.tanh(std_delta_len) + not_gamed_baseline.astype(float) - 1",
}
CS = np.logspace(-4, 4, 10)
N_SPLITS = 5
MIN_N = 10


@dataclass
class LCResult:
    """A length-controlled win rate: ``lc_winrate`` and ``lc_standard_error`` ×100, the ``n``
    instructions it was fitted on, the GLM's ``formula`` name, coefficients and C, and a ``note``."""

    lc_winrate: float
    lc_standard_error: float
    n: int
    glm: str = ""
    coef: dict[str, float] = field(default_factory=dict)
    C: float = float("nan")
    note: str = ""
    predicted: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    @property
    def identifiable(self) -> bool:
        """False when there is no fit or the fit's every weight is 0: it then predicts 50% whatever the
        data, so its number says nothing (report "not identifiable", not 50)."""
        return (not math.isnan(self.lc_winrate)) and any(abs(float(v)) >= 1e-8 for v in self.coef.values())

    def summary(self) -> dict[str, Any]:
        nan = lambda v: None if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
        return {"lc_winrate": nan(self.lc_winrate), "lc_standard_error": nan(self.lc_standard_error), "n": self.n,
                "identifiable": self.identifiable, "glm": self.glm, "coef": {k: float(v) for k, v in self.coef.items()},
                "C": nan(float(self.C)),
                "note": self.note}


def _nothing(n: int, note: str) -> LCResult:
    return LCResult(float("nan"), float("nan"), n, note=note)


def _objective(w_split: np.ndarray, X: np.ndarray, p: np.ndarray, C: float):
    """The liblinear objective divided by C·n (same minimiser, well scaled for any C)."""
    n, k = X.shape
    w = w_split[:k] - w_split[k:]
    z = X @ w
    loss = float(np.sum(p * np.logaddexp(0.0, -z) + (1 - p) * np.logaddexp(0.0, z))) / n
    g = (X.T @ (expit(z) - p)) / n
    pen = 1.0 / (C * n)
    return loss + pen * float(w_split.sum()), np.concatenate([g + pen, -g + pen])


def fit_l1_logistic(X: np.ndarray, p: np.ndarray, C: float) -> np.ndarray:
    """argmin_w |w|_1 + C · Σ_i [p_i·log(1 + e^(−x_i·w)) + (1 − p_i)·log(1 + e^(x_i·w))] (no intercept)."""
    k = X.shape[1]
    res = minimize(_objective, np.zeros(2 * k), args=(X, p, C), jac=True, method="L-BFGS-B",
                   bounds=[(0.0, None)] * (2 * k), options={"maxiter": 1000, "ftol": 1e-13, "gtol": 1e-9})
    return res.x[:k] - res.x[k:]


def _logloss(p: np.ndarray, q: np.ndarray) -> float:
    q = np.clip(q, 1e-15, 1 - 1e-15)
    return float(-np.mean(p * np.log(q) + (1 - p) * np.log(1 - q)))


def fit_cv(X: np.ndarray, p: np.ndarray, *, Cs: Sequence[float] = CS, n_splits: int = N_SPLITS) -> tuple[np.ndarray, float]:
    """AlpacaEval's ``fit_LogisticRegressionCV`` (soft labels): the C of ``Cs`` with the lowest mean
    held-out log-loss over ``n_splits`` folds of rows, then the fit on all rows with it."""
    folds = np.arange(len(p)) % n_splits
    scores = []
    for C in Cs:
        losses = []
        for f in range(n_splits):
            test = folds == f
            if not test.any() or test.all():
                continue
            w = fit_l1_logistic(X[~test], p[~test], C)
            losses.append(_logloss(p[test], expit(X[test] @ w)))
        scores.append(np.mean(losses) if losses else np.inf)
    best = float(Cs[int(np.argmin(scores))])
    return fit_l1_logistic(X, p, best), best


def length_controlled(preference: Sequence[float], reference_length: Sequence[float], policy_length: Sequence[float],
                      difficulty: Sequence[float] | None = None, *, min_n: int = MIN_N) -> LCResult:
    """The LC win rate of preferences P(policy better) given both outputs' lengths (characters) and,
    optionally, an instruction difficulty per row. NaN preferences are left out."""
    pref = np.asarray(preference, dtype=float)
    keep = ~np.isnan(pref)
    pref = pref[keep]
    delta = (np.asarray(reference_length, dtype=float) - np.asarray(policy_length, dtype=float))[keep]
    n = len(pref)
    if n < min_n:
        return _nothing(n, f"too few instructions for the length model ({n} < {min_n})")
    notes = []
    sd = float(np.std(delta, ddof=1))
    if not sd > 0:
        notes.append("no length difference varies across instructions: the length term is 0")
        x_len = np.zeros(n)
    else:
        x_len = np.tanh(delta / sd)
    cols = {"np.tanh(std_delta_len)": x_len}
    if difficulty is not None:
        cols["instruction_difficulty"] = np.asarray(difficulty, dtype=float)[keep]
        glm = "length_controlled_noreg"
    else:
        glm = "length_controlled_minimal"
    cols["not_gamed_baseline.astype(float)"] = np.ones(n)
    X = np.column_stack(list(cols.values()))
    w, C = fit_cv(X, pref)
    X_test = X.copy()
    X_test[:, 0] = 0.0  # as if there were no length difference
    pred = expit(X_test @ w)
    if np.all(np.abs(w) < 1e-8):
        notes.append(f"cross-validation chose C={C:g}, where every weight is 0: the model predicts 50% "
                     "(the data do not support a length model; the raw win rate is the better summary)")
    se = float(pd.Series(pred).sem()) * 100
    return LCResult(100 * float(pred.mean()), se, n, glm=glm, coef=dict(zip(cols, w)), C=C,
                    note="; ".join(notes), predicted=pred)


def is_extreme_change(raw: float, lc_value: float, abs_diff: float = 10, rel_diff: float = 4) -> bool:
    """AlpacaEval's ``get_is_extreme_changes``: the LC win rate left [raw − max(raw/4, 10), raw +
    max((100 − raw)/4, 10)] — a sign that the GLM failed (e.g. verdicts perfectly separated by length)."""
    too_small = lc_value < min(raw - raw / rel_diff, raw - abs_diff)
    too_large = lc_value > max(raw + (100 - raw) / rel_diff, raw + abs_diff)
    return bool(too_small or too_large)


def _lengths(texts) -> np.ndarray:
    return np.array([float(len(t)) if isinstance(t, str) else np.nan for t in texts])


def lc_for_items(items: pd.DataFrame, difficulty: Mapping[str, float] | pd.Series | None = None) -> LCResult:
    """The LC win rate of a result's per-instruction ``items`` (``win``, ``policy_output``,
    ``reference_output``, ``key``); ``difficulty`` maps ``key`` to the instruction difficulty."""
    counted = items[items["win"].notna()] if "win" in items else items.iloc[:0]
    if "policy_output" not in counted or "reference_output" not in counted:
        return _nothing(len(counted), "no output texts to measure lengths (pass the outputs' alignment as items)")
    pl, rl = _lengths(counted["policy_output"]), _lengths(counted["reference_output"])
    ok = ~(np.isnan(pl) | np.isnan(rl))
    counted = counted[ok]
    diff = None
    if difficulty is not None:
        d = pd.Series(difficulty, dtype=float)
        diff = counted["key"].map(d).fillna(0.0).to_numpy(float)
    res = length_controlled(counted["win"].to_numpy(float), rl[ok], pl[ok], diff)
    raw = 100 * float(counted["win"].mean()) if len(counted) else float("nan")
    if not math.isnan(res.lc_winrate) and is_extreme_change(raw, res.lc_winrate):
        res.note = "; ".join(x for x in (res.note, f"length-controlled win rate very different from the raw one "
                                                   f"({res.lc_winrate:.1f} vs {raw:.1f}): the GLM may have failed "
                                                   "(AlpacaEval's warning)") if x)
    if (~ok).any():
        res.note = "; ".join(x for x in (res.note, f"{int((~ok).sum())} counted without both output texts: left out") if x)
    return res


def instruction_difficulty(others: Sequence[pd.DataFrame]) -> pd.Series:
    """logit((Σ p + 0.5) / (k + 1)) per instruction ``key`` over the counted ``win`` of the other policies'
    items (k = how many of them counted that instruction)."""
    frames = [o.loc[o["win"].notna(), ["key", "win"]] for o in others if len(o) and "win" in o]
    if not frames:
        return pd.Series(dtype=float)
    g = pd.concat(frames, ignore_index=True).groupby("key")["win"].agg(["sum", "count"])
    p = (g["sum"] + 0.5) / (g["count"] + 1)
    return np.log(p / (1 - p))


def with_instruction_difficulty(results: Sequence) -> list:
    """The results with their LC win rate refitted with the instruction-difficulty term, estimated for
    each from the *other* results of the same protocol and reference (leave-one-policy-out). A result
    with no other policy to learn difficulties from keeps its minimal-formula LC win rate."""
    out = []
    for r in results:
        others = [o.items for o in results if o is not r and o.protocol == r.protocol
                  and o.reference == r.reference and o.policy != r.policy and o.n > 0]
        if not others or r.n == 0:
            out.append(r)
            continue
        lc = lc_for_items(r.items, instruction_difficulty(others))
        out.append(r.with_lc(lc))
    return out
