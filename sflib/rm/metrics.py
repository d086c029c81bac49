"""Held-out metrics of reward models: pairwise accuracy on rankings, MSE / Spearman on ratings."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..core.data import clean_input
from .folder import RewardModel
from .objectives import prepare_ratings, prepare_rankings, score_to_target
from .scoring import score


def _score_unique(rm: RewardModel, df: pd.DataFrame, columns: Sequence[str], batch_size: int,
                  progress: bool | None) -> list[np.ndarray]:
    """Rewards for several response columns of one table, scoring each distinct text once."""
    inputs = df["input"].tolist() if "input" in df.columns else [""] * len(df)
    keys, rows = {}, []
    for col in columns:
        for ins, inp, resp in zip(df["instruction"], inputs, df[col]):
            key = (ins, clean_input(inp), resp)
            if key not in keys:
                keys[key] = len(rows)
                rows.append(key)
    rewards = score(rm, [r[0] for r in rows], [r[2] for r in rows], batch_size, [r[1] for r in rows], progress)
    return [np.array([rewards[keys[(i, clean_input(x), r)]] for i, x, r in zip(df["instruction"], inputs, df[col])])
            for col in columns]


def pairwise_accuracy(rm: RewardModel, rankings: pd.DataFrame, batch_size: int = 32,
                      progress: bool | None = None) -> dict:
    """Share of held-out ranking pairs (ties excluded) where the preferred response gets the higher reward.

    Equal rewards count one half. Returns ``pairwise_accuracy, n_pairs, ties_excluded``.
    """
    df, counts = prepare_rankings(rankings, ties="exclude")
    if not len(df):
        return {"pairwise_accuracy": float("nan"), "n_pairs": 0, "ties_excluded": counts["ties_excluded"]}
    r_pref, r_other = _score_unique(rm, df, ["preferred", "other"], batch_size, progress)
    acc = float(np.mean((r_pref > r_other) + 0.5 * (r_pref == r_other)))
    return {"pairwise_accuracy": acc, "n_pairs": len(df), "ties_excluded": counts["ties_excluded"]}


def ratings_agreement(rm: RewardModel, ratings: pd.DataFrame, batch_size: int = 32,
                      progress: bool | None = None) -> dict:
    """Spearman correlation of rewards with held-out scores, and (ratings RM only) the MSE.

    The MSE is the training objective's: ``sigmoid(reward)`` against ``(score - 1) / 6``; a rankings
    RM's rewards have no absolute scale, so its MSE is NaN.
    """
    from scipy.stats import spearmanr

    df, _ = prepare_ratings(ratings)
    if not len(df):
        return {"mse": float("nan"), "spearman": float("nan"), "n_ratings": 0}
    (rewards,) = _score_unique(rm, df, ["response"], batch_size, progress)
    target = score_to_target(df["score"].to_numpy(dtype=float))
    mse = float(np.mean((1 / (1 + np.exp(-rewards)) - target) ** 2)) if rm.kind == "ratings" else float("nan")
    rho = float(spearmanr(rewards, df["score"]).statistic) if df["score"].nunique() > 1 and len(df) > 2 else float("nan")
    return {"mse": mse, "spearman": rho, "n_ratings": len(df)}


def held_out_ratings(rm: RewardModel, ratings: pd.DataFrame, batch_size: int = 32) -> pd.DataFrame:
    """One row per usable held-out rating: ``score``, ``target`` ((score − 1) / 6), ``reward`` and, for a
    ratings RM, ``predicted`` = sigmoid(reward) on the target's scale (NaN for a rankings RM) — what the
    baselines in :mod:`sflib.rm.findings` are compared with."""
    df, _ = prepare_ratings(ratings) if len(ratings) else (ratings, None)
    if not len(df):
        return pd.DataFrame(columns=["score", "target", "reward", "predicted"])
    (rewards,) = _score_unique(rm, df, ["response"], batch_size, False)
    target = score_to_target(df["score"].to_numpy(dtype=float))
    predicted = 1 / (1 + np.exp(-rewards)) if rm.kind == "ratings" else np.full(len(df), np.nan)
    return pd.DataFrame({"score": df["score"].to_numpy(), "target": target, "reward": rewards, "predicted": predicted})


def evaluate(rms: dict[str, RewardModel], ratings: pd.DataFrame | None = None, rankings: pd.DataFrame | None = None,
             batch_size: int = 32) -> pd.DataFrame:
    """The held-out table: one row per reward model with pairwise accuracy on ``rankings`` and
    MSE / Spearman on ``ratings`` — the cross view included (ratings RM on pairs, rankings RM on ratings)."""
    rows = []
    for name, rm in rms.items():
        row = {"reward_model": name, "kind": rm.kind}
        if rankings is not None:
            row.update(pairwise_accuracy(rm, rankings, batch_size))
        if ratings is not None:
            row.update(ratings_agreement(rm, ratings, batch_size))
        rows.append(row)
    return pd.DataFrame(rows).set_index("reward_model")

