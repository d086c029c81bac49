"""Reward-model objectives and the feedback they train on.

- **ratings RM**: regression of ``sigmoid(r)`` onto ``(score - 1) / 6`` with squared error;
- **rankings RM**: Bradley–Terry, ``-log sigmoid(r_preferred - r_other - margin)``; ties
  (``decision == "equal"``) are excluded by default (``ties="include"`` pulls tied rewards
  together with ``-(log sigmoid(d) + log sigmoid(-d)) / 2``).

Also the preparation of the feedback tables (usable rows and their counts), the train / validation
split by instruction, and the check of a released train / validation split (:func:`released_split`).
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd
import torch

from ..core.data import DECISIONS, SCORE_MAX, SCORE_MIN, DataError, add_ids, clean_input, make_id

KINDS = ("ratings", "rankings")


def score_to_target(score) -> np.ndarray | torch.Tensor:
    """The ratings RM target: ``(score - 1) / 6`` maps the 1–7 scale onto [0, 1]."""
    return (score - SCORE_MIN) / (SCORE_MAX - SCORE_MIN)


def reward_to_score(reward) -> np.ndarray:
    """A ratings RM's reward mapped back to the 1–7 scale: ``1 + 6 * sigmoid(reward)``."""
    return SCORE_MIN + (SCORE_MAX - SCORE_MIN) / (1.0 + np.exp(-np.asarray(reward, dtype=float)))


def ratings_loss(rewards: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error between ``sigmoid(reward)`` and the target ``(score - 1) / 6``."""
    return torch.mean((torch.sigmoid(rewards.float()) - targets.float()) ** 2)


def bradley_terry_loss(r_preferred: torch.Tensor, r_other: torch.Tensor, margin: float = 0.0,
                       ties: torch.Tensor | None = None) -> torch.Tensor:
    """Mean Bradley–Terry loss ``-log sigmoid(r_preferred - r_other - margin)`` over pairs.

    Pairs flagged in ``ties`` (when ties are included in training) use
    ``-(log sigmoid(d) + log sigmoid(-d)) / 2`` instead, which is smallest when the rewards are equal.
    """
    d = r_preferred.float() - r_other.float()
    loss = -torch.nn.functional.logsigmoid(d - margin)
    if ties is not None and bool(ties.any()):
        tie_loss = -0.5 * (torch.nn.functional.logsigmoid(d) + torch.nn.functional.logsigmoid(-d))
        loss = torch.where(ties.bool(), tie_loss, loss)
    return loss.mean()



def _require_columns(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(None, f"{what} table lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns))})",
                        field=missing[0])


def instruction_ids(df: pd.DataFrame) -> pd.Series:
    """The instruction id of every row of a feedback table (same index): its ``instruction_id`` column,
    or else the stable hash of ``instruction`` and ``input`` (:func:`sflib.core.data.make_id`; no ``input``
    column = empty inputs). These are the ids :func:`validation_instructions` draws from and
    :func:`split_by_instruction` splits by."""
    if "instruction_id" in df.columns:
        return df["instruction_id"].astype(str)
    inputs = df["input"] if "input" in df.columns else [""] * len(df)
    return pd.Series([make_id(i, x) for i, x in zip(df["instruction"], inputs)], index=df.index)


def prepare_ratings(ratings: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Usable ratings rows and counts; rows without a score (an invalid judge reply) are dropped and counted.

    A score that is present but not an integer on the 1–7 scale raises :class:`DataError` naming
    the row (1-based) and the field, before any training starts.
    """
    _require_columns(ratings, ["instruction", "response", "score"], "ratings")
    df = ratings.reset_index(drop=True)
    missing = df["score"].isna()
    for n, v in enumerate(df["score"], 1):
        if pd.isna(v):
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise DataError(None, f"score {v!r} is not a number on the {SCORE_MIN}-{SCORE_MAX} scale", row=n,
                            field="score") from None
        if not (SCORE_MIN <= f <= SCORE_MAX) or f != int(f):
            raise DataError(None, f"score {v!r} is outside the {SCORE_MIN}-{SCORE_MAX} integer scale; "
                                  "fix or drop that row before training", row=n, field="score")
    out = df.loc[~missing].copy()
    out["score"] = out["score"].astype(float).astype(int)
    out["input"] = [clean_input(x) for x in out["input"]] if "input" in out else ""
    return out.reset_index(drop=True), {"rows": len(df), "without_score": int(missing.sum()), "used": len(out)}


def prepare_rankings(rankings: pd.DataFrame, ties: str = "exclude") -> tuple[pd.DataFrame, dict]:
    """Usable ranking pairs with ``preferred``/``other`` columns and counts.

    Ties are excluded (``ties="exclude"``, the default) or kept as tie pairs (``"include"``);
    rows without a decision (an invalid judge reply) are dropped and counted; any other decision
    than a / b / equal raises :class:`DataError` naming the row.
    """
    if ties not in ("exclude", "include"):
        raise ValueError(f"ties must be 'exclude' or 'include', not {ties!r}")
    _require_columns(rankings, ["instruction", "response1", "response2", "decision"], "rankings")
    df = rankings.reset_index(drop=True)
    missing = df["decision"].isna()
    for n, v in enumerate(df["decision"], 1):
        if not pd.isna(v) and v not in DECISIONS:
            raise DataError(None, f"decision {v!r} is not one of {', '.join(DECISIONS)}", row=n, field="decision")
    is_tie = df["decision"] == "equal"
    keep = ~missing & (~is_tie if ties == "exclude" else True)
    out = df.loc[keep].copy()
    b = out["decision"] == "b"
    out["preferred"] = np.where(b, out["response2"], out["response1"])
    out["other"] = np.where(b, out["response1"], out["response2"])
    out["tie"] = out["decision"] == "equal"
    out["input"] = [clean_input(x) for x in out["input"]] if "input" in out else ""
    counts = {"rows": len(df), "without_decision": int(missing.sum()), "ties": int(is_tie.sum()),
              "ties_excluded": int(is_tie.sum()) if ties == "exclude" else 0, "used": len(out)}
    return out.reset_index(drop=True), counts


def validation_instructions(ids: Iterable[str], val_fraction: float = 0.2, seed: int = 0) -> set[str]:
    """A seeded choice of ``ceil(val_fraction * n)`` instruction ids (at least one when 0 < val_fraction and n ≥ 2)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    unique = sorted(set(map(str, ids)))
    n_val = 0 if val_fraction == 0 else min(len(unique) - 1, max(1, math.ceil(val_fraction * len(unique))))
    order = np.random.default_rng(seed).permutation(len(unique))
    return {unique[i] for i in order[:max(n_val, 0)]}


def split_by_instruction(df: pd.DataFrame, val_fraction: float = 0.2, seed: int = 0,
                         val_ids: Iterable[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train / validation frames split by instruction (never by row): an instruction is on one side only.

    Pass ``val_ids`` (e.g. from :func:`validation_instructions` over the union of the ratings and the
    rankings) so the two feedback tables share one split; otherwise the split is drawn from ``df``.
    """
    ids = instruction_ids(df)
    chosen = set(map(str, val_ids)) if val_ids is not None else validation_instructions(ids, val_fraction, seed)
    is_val = ids.isin(chosen).to_numpy()
    return df.loc[~is_val].reset_index(drop=True), df.loc[is_val].reset_index(drop=True)


def _pair_keys(df: pd.DataFrame) -> list[tuple[str, frozenset]]:
    """(instruction id, {response id, response id}) of every ranking row: a pair in either order."""
    if not {"instruction_id", "response_id_1", "response_id_2"} <= set(df.columns):
        df = add_ids(df)
    return [(str(i), frozenset((a, b))) for i, a, b in zip(df["instruction_id"], df["response_id_1"],
                                                             df["response_id_2"])]


def released_split(split: pd.DataFrame, rankings: pd.DataFrame, path=None,
                   table: str = "rm_split") -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The rankings RM's released train and validation pairs, checked against the study's rankings.

    ``split``: ranking rows with a ``split`` column ``train`` / ``val`` (:func:`sflib.io.hub.read_rm_split`,
    stored as the table ``rm_split`` of the rankings stage). Returns ``(train, val, info)``: the rows of
    each part as they are (``split`` column dropped) and ``info`` (``train_pairs``, ``val_pairs``,
    ``not_in_split``: the ranked pairs with a preference that are in neither part; ``not_in_rankings``: the
    released pairs not among ``rankings``). Raises
    :class:`DataError` naming ``path`` / ``table`` when a part is empty, a ``split`` value is neither
    ``train`` nor ``val``, or no released pair occurs among ``rankings`` (some absent ones are kept and
    counted: ``not_in_rankings``).
    """
    what = f"the released reward-model split (table {table} of the rankings stage)"
    need = ["instruction", "response1", "response2", "decision", "split"]
    missing = [c for c in need if c not in split.columns]
    if missing:
        raise DataError(path, f"{what} lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, split.columns))})",
                        field=missing[0])
    split = split.reset_index(drop=True)
    parts = split["split"].astype(str).str.strip().str.lower()
    bad = ~parts.isin(["train", "val"])
    if bad.any():
        n = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(path, f"{what}: split {split['split'].iloc[n]!r} is neither 'train' nor 'val'", row=n + 1,
                        field="split")
    n_train, n_val = int((parts == "train").sum()), int((parts == "val").sum())
    if not n_train or not n_val:
        raise DataError(path, f"{what} has no {'train' if not n_train else 'val'} pairs ({n_train} train / {n_val} "
                              "val): the rankings RM needs both; the released folder must hold a train and a val "
                              "file (re-seed the rankings stage from them)", field="split")
    known = set(_pair_keys(rankings)) if len(rankings) else set()
    keys = _pair_keys(split)
    absent = [n for n, k in enumerate(keys) if k not in known]
    if absent and len(absent) == len(split):  # none of them: a split of other feedback
        first = split.iloc[absent[0]]
        raise DataError(path, f"{len(absent):,} of the {len(split):,} pairs of {what} do not occur among the "
                              f"rankings stage's {len(rankings):,} ranked pairs (the first: instruction "
                              f"{str(first['instruction'])[:60]!r}): this split is not about this study's "
                              "rankings", row=absent[0] + 1)
    in_split = set(keys)
    usable = rankings["decision"].isin(["a", "b"]).to_numpy() if len(rankings) else np.zeros(0, bool)
    left_out = sum(1 for k, u in zip(_pair_keys(rankings), usable) if u and k not in in_split) if len(rankings) else 0
    rows = split.drop(columns=["split"])
    # a few released pairs whose texts differ from the rankings' (quoting, whitespace) are trained on as released
    info = {"train_pairs": n_train, "val_pairs": n_val, "not_in_split": int(left_out),
            "not_in_rankings": len(absent)}
    return rows[(parts == "train").to_numpy()].reset_index(drop=True), \
        rows[(parts == "val").to_numpy()].reset_index(drop=True), info


def prepare(kind: str, df: pd.DataFrame, ties: str = "exclude") -> tuple[pd.DataFrame, dict]:
    """:func:`prepare_ratings` or :func:`prepare_rankings` by ``kind``."""
    return prepare_ratings(df) if kind == "ratings" else prepare_rankings(df, ties)
