"""Best-of-n samples and the selection among them.

- :func:`check_samples` — exactly ``n`` samples per instruction (the first ``n`` by ``sample``); an
  instruction with fewer is an error, or a warning with counts when ``allow_fewer=True``; empty
  responses are counted in a warning (they stay candidates: the reward model judges them).
- :func:`select_best` — the argmax per instruction (ties: the earliest sample).
"""
from __future__ import annotations

import warnings

import pandas as pd

from ..core.data import DataError, make_id

REWARD = "reward"


def _with_ids(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``instruction_id`` (from the text) and ``sample`` (order within the instruction) when missing."""
    df = df.copy()
    if "instruction_id" not in df:
        inputs = df["input"] if "input" in df else [""] * len(df)
        df["instruction_id"] = [make_id(i, x) for i, x in zip(df["instruction"], inputs)]
    if "sample" not in df:
        df["sample"] = df.groupby("instruction_id", sort=False).cumcount()
    return df


def check_samples(responses: pd.DataFrame, n: int | None = None, *, allow_fewer: bool = False,
                  reward: str | None = REWARD) -> pd.DataFrame:
    """The first ``n`` samples (by ``sample``) of every instruction, in instruction order.

    ``n=None``: the largest number of samples any instruction has. An instruction with fewer than
    ``n`` samples raises a ``ValueError`` with counts, or with ``allow_fewer=True`` is kept with the
    samples it has and reported in a warning. Extra samples beyond ``n`` are set aside (counted in a
    warning). A missing reward (NaN) raises; empty responses are counted in a warning and kept.
    """
    if not len(responses):
        raise ValueError("no responses: nothing to select from")
    df = _with_ids(responses)
    if df.duplicated(["instruction_id", "sample"]).any():
        dup = int(df.duplicated(["instruction_id", "sample"]).sum())
        raise DataError(None, f"{dup} rows repeat an (instruction_id, sample) pair; each sample must appear once",
                        field="sample")
    if reward is not None:
        if reward not in df:
            raise DataError(None, f"responses table has no '{reward}' column; score it first with score_samples()",
                            field=reward)
        missing = df[reward].isna()
        if missing.any():
            raise ValueError(f"{int(missing.sum())} of {len(df)} responses have no {reward} (NaN); score them again")
    order = {iid: i for i, iid in enumerate(dict.fromkeys(df["instruction_id"]))}
    df = df.assign(_order=df["instruction_id"].map(order)).sort_values(["_order", "sample"], kind="stable")
    counts = df.groupby("instruction_id", sort=False).size()
    n = int(counts.max()) if n is None else int(n)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    short = counts[counts < n]
    if len(short):
        message = (f"{len(short)} of {len(counts)} instructions have fewer than n={n} samples (as few as "
                   f"{int(short.min())}; e.g. instruction_id {', '.join(short.index[:3])})")
        if not allow_fewer:
            raise ValueError(message + ". Generate the missing samples (k >= n), lower n, or pass allow_fewer=True "
                                       "to select among the samples they have")
        warnings.warn(message + "; they select among the samples they have", stacklevel=3)
    extra = int((counts - n).clip(lower=0).sum())
    if extra:
        warnings.warn(f"{extra} samples beyond the first n={n} of their instruction are not used", stacklevel=3)
    df = df[df.groupby("instruction_id", sort=False).cumcount() < n].drop(columns="_order")
    empty = df["response"].fillna("").astype(str).str.strip() == ""
    if empty.any():
        warnings.warn(f"{int(empty.sum())} of {len(df)} samples are empty responses (in "
                      f"{df.loc[empty, 'instruction_id'].nunique()} of {len(counts)} instructions); they remain "
                      f"candidates and are scored like any other response", stacklevel=3)
    df.attrs["n"] = n
    return df.reset_index(drop=True)


def select_best(responses_with_rewards: pd.DataFrame, n: int | None = None, *, reward: str = REWARD,
                allow_fewer: bool = False) -> pd.DataFrame:
    """One row per instruction: the sample with the highest reward among its first ``n`` samples.

    Ties go to the earliest sample. Adds ``n_samples`` (candidates considered). Reports how many
    selected responses are empty.
    """
    df = check_samples(responses_with_rewards, n, allow_fewer=allow_fewer, reward=reward)
    best = df.groupby("instruction_id", sort=False)[reward].idxmax()  # first occurrence: earliest sample
    out = df.loc[best.values].copy()
    out["n_samples"] = df.groupby("instruction_id", sort=False).size().loc[out["instruction_id"]].values
    _warn_empty_selected(out)
    return out.reset_index(drop=True)


def _warn_empty_selected(selected: pd.DataFrame) -> None:
    empty = selected["response"].fillna("").astype(str).str.strip() == ""
    if empty.any():
        warnings.warn(f"{int(empty.sum())} of {len(selected)} selected responses are empty (the reward model "
                      f"preferred an empty response); they are kept", stacklevel=3)

