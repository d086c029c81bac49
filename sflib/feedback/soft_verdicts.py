"""Hard or soft verdicts: which column of a judge's output consistency and evaluation read.

A judge that returns log-probabilities can store, beside its parsed text verdict:

- ratings rows: ``expected_score`` — the expected score over the 1-7 tokens (a float on the scale);
- rankings rows: ``p_a`` — the probability that the first response (a) is better, position-corrected
  across both orders (a float in [0, 1]).

``verdicts="hard"`` uses ``score`` and ``decision`` as always. ``verdicts="soft"`` uses the soft
columns, defined exactly as:

- a rating's soft score is ``expected_score``; the ratings-implied preference of a pair is
  sign(expected_score1 − expected_score2): ``a`` if positive, ``b`` if negative, ``equal`` if zero;
- a ranking's soft preference is sign(p_a − 0.5): ``a`` if p_a > 0.5, ``b`` if p_a < 0.5, ``equal`` if
  p_a = 0.5 exactly; under the ranking protocol the policy is (b), so P(policy better) = 1 − p_a;
- a row whose soft value is missing (NaN: no logprobs for that item) falls back to its hard verdict
  (``score``; ``decision`` as p_a = 1 / 0.5 / 0 for a / equal / b), and is counted
  (``n_fallback``); a table without the column at all (or with it empty) is used hard, with a note.

So soft consistency = the share of compared pairs where the sign of the expected-score difference
equals the sign of p_a − 0.5; the soft rating-protocol win = 1 / 0.5 / 0 as the sign of
expected_score(policy) − expected_score(reference) (the expected scores do not carry the score
distributions, so a probability that the policy is better cannot be derived from them); the soft
ranking-protocol win = 1 − p_a, a probability, whose mean is the soft win rate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core import data
from ..core.data import DataError

VERDICTS = ("hard", "soft")
SOFT_RATING = "expected_score"
SOFT_RANKING = "p_a"
#: p_a of a hard decision (the fallback)
DECISION_P_A = {"a": 1.0, "equal": 0.5, "b": 0.0}


@dataclass
class VerdictInfo:
    """What a table's verdicts were taken from: ``verdicts`` used ("hard"/"soft"), how many rows had a
    soft value (``n_soft``) and how many fell back to the hard one (``n_fallback``), and a note."""

    verdicts: str
    n_soft: int = 0
    n_fallback: int = 0
    note: str = ""

    def as_dict(self) -> dict:
        return {"verdicts": self.verdicts, "n_soft": self.n_soft, "n_fallback": self.n_fallback, "note": self.note}


def check_verdicts(verdicts: str) -> str:
    if verdicts not in VERDICTS:
        raise ValueError(f"verdicts must be 'hard' or 'soft', not {verdicts!r}")
    return verdicts


def _numbers(df: pd.DataFrame, col: str, lo: float, hi: float, name: str) -> np.ndarray:
    raw = df[col]
    v = pd.to_numeric(raw, errors="coerce").astype(np.float64)
    bad = (raw.notna() & v.isna()) | (v.notna() & ((v < lo) | (v > hi)))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        value = raw.iloc[i]
        value = value.item() if isinstance(value, np.generic) else value
        raise DataError(name, f"{col} {value!r} is not a number in [{lo:g}, {hi:g}]", row=i + 1, field=col)
    return v.to_numpy()


def _missing(df: pd.DataFrame, col: str, kind: str) -> str | None:
    if col not in df.columns:
        return f"soft verdicts asked for, but the {kind} have no '{col}' column: hard verdicts used"
    if df[col].isna().all():
        return f"soft verdicts asked for, but no {kind} row has a '{col}' value: hard verdicts used"
    return None


def soft_ratings(ratings: pd.DataFrame, name: str = "ratings") -> tuple[pd.DataFrame, VerdictInfo]:
    """Ratings with ``score`` replaced by the soft score (``expected_score``, else the hard score)."""
    note = _missing(ratings, SOFT_RATING, "ratings")
    if note:
        return ratings, VerdictInfo("hard", note=note)
    soft = _numbers(ratings, SOFT_RATING, data.SCORE_MIN, data.SCORE_MAX, name)
    hard = pd.to_numeric(ratings["score"], errors="coerce").to_numpy(np.float64) if "score" in ratings else \
        np.full(len(ratings), np.nan)
    has = ~np.isnan(soft)
    fallback = ~has & ~np.isnan(hard)
    info = VerdictInfo("soft", n_soft=int(has.sum()), n_fallback=int(fallback.sum()))
    if info.n_fallback:
        info.note = f"{info.n_fallback} ratings without '{SOFT_RATING}' use their hard score"
    return ratings.assign(score=np.where(has, soft, hard)), info


def hard_p_a(decisions: pd.Series) -> np.ndarray:
    """p_a of hard decisions (a = 1, equal = 0.5, b = 0; NaN for no or an unknown decision)."""
    labels = [data._LABELS.get(str(d).strip().lower()) if isinstance(d, str) else None for d in decisions]
    return np.array([DECISION_P_A.get(x, np.nan) if x else np.nan for x in labels], dtype=np.float64)


def p_a_decision(p_a: np.ndarray) -> np.ndarray:
    """The preference sign(p_a − 0.5) as labels a / b / equal (None where p_a is NaN)."""
    p = np.asarray(p_a, dtype=np.float64)
    out = np.where(p > 0.5, "a", np.where(p < 0.5, "b", "equal")).astype(object)
    out[np.isnan(p)] = None
    return out


def soft_p_a(rankings: pd.DataFrame, name: str = "rankings") -> tuple[np.ndarray | None, VerdictInfo]:
    """Each row's p_a (the soft value, else the hard decision's), or None when the column is missing."""
    note = _missing(rankings, SOFT_RANKING, "rankings")
    if note:
        return None, VerdictInfo("hard", note=note)
    soft = _numbers(rankings, SOFT_RANKING, 0.0, 1.0, name)
    hard = hard_p_a(rankings["decision"]) if "decision" in rankings else np.full(len(rankings), np.nan)
    has = ~np.isnan(soft)
    fallback = ~has & ~np.isnan(hard)
    info = VerdictInfo("soft", n_soft=int(has.sum()), n_fallback=int(fallback.sum()))
    if info.n_fallback:
        info.note = f"{info.n_fallback} rankings without '{SOFT_RANKING}' use their hard decision"
    return np.where(has, soft, hard), info


def soft_rankings(rankings: pd.DataFrame, name: str = "rankings") -> tuple[pd.DataFrame, VerdictInfo]:
    """Rankings with ``decision`` replaced by the soft preference sign(p_a − 0.5) (else the hard one)."""
    p, info = soft_p_a(rankings, name)
    if p is None:
        return rankings, info
    decision = p_a_decision(p)
    if "decision" in rankings:  # keep a hard label that is unknown, so that it still raises
        keep = np.isnan(p) & rankings["decision"].notna().to_numpy()
        decision[keep] = rankings["decision"].to_numpy(object)[keep]
    return rankings.assign(decision=decision, p_a=p), info
