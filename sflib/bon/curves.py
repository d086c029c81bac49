"""Best-of-m from the same n scored samples, and comparisons of selections.

- :func:`best_of_m_selections` / :func:`best_of_m_curve` — best-of-m for m = 1, 2, 4, ..., n from
  the *same* n scored samples, no rescoring. Each instruction's samples are put in one fixed
  random order (seeded by ``hash(seed, instruction_id)``) and best-of-m picks from its first m, so
  the subsets are nested (the best-of-4 candidates include the best-of-2 ones) and do not depend
  on which other instructions are in the run. The curve reports the reward of these selections
  and the exact expectation over all m-subsets (order statistics), which has no sampling noise.
- :func:`agreement` — how often two reward models pick the same sample, for each m.
- :func:`length_by_m` — length of the selected outputs vs all samples (length bias).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .select import REWARD, _with_ids, check_samples


def default_ms(n: int) -> list[int]:
    """1, 2, 4, ... up to ``n`` (``n`` itself included even when it is not a power of two)."""
    ms, m = [], 1
    while m < n:
        ms.append(m)
        m *= 2
    return ms + [n]


def subset_order(instruction_id: str, n: int, seed: int = 0) -> np.ndarray:
    """The fixed random order of an instruction's ``n`` samples; best-of-m uses its first m."""
    from ..generation.generate import instruction_seed

    return np.random.default_rng(instruction_seed(seed, f"best-of-m:{instruction_id}")).permutation(n)


def expected_best_of_m(rewards: Sequence[float], m: int) -> float:
    """The exact mean, over all m-subsets of the samples, of the subset's highest reward.

    With the rewards sorted ascending ``r_1 <= ... <= r_n``, the highest of a uniformly random
    m-subset is ``r_i`` with probability ``C(i-1, m-1) / C(n, m)``.
    """
    r = np.sort(np.asarray(rewards, dtype=float))
    n = len(r)
    if not 1 <= m <= n:
        raise ValueError(f"m must be between 1 and the number of samples ({n}), got {m}")
    weights = np.array([math.comb(i - 1, m - 1) for i in range(1, n + 1)], dtype=float) / math.comb(n, m)
    return float(weights @ r)


def _rewards_dict(rewards_by_instruction, reward: str = REWARD) -> dict[str, np.ndarray]:
    """``{instruction_id: rewards in sample order}`` from a frame, a mapping or a 2-D array."""
    if isinstance(rewards_by_instruction, pd.DataFrame):
        df = _with_ids(rewards_by_instruction).sort_values("sample", kind="stable")
        return {iid: g[reward].to_numpy(float) for iid, g in df.groupby("instruction_id", sort=False)}
    if isinstance(rewards_by_instruction, Mapping):
        return {str(k): np.asarray(v, dtype=float) for k, v in rewards_by_instruction.items()}
    arr = np.asarray(rewards_by_instruction, dtype=float)
    if arr.ndim != 2:
        raise ValueError("rewards must be a frame, a mapping instruction_id -> rewards, or a 2-D array "
                         "(instructions x samples)")
    return {str(i): row for i, row in enumerate(arr)}


def _pick(rewards: np.ndarray, order: np.ndarray, m: int) -> int:
    """The sample picked by best-of-m: the highest reward among ``order[:m]``, ties to the earliest sample."""
    candidates = np.sort(order[:m])
    return int(candidates[np.argmax(rewards[candidates])])


def best_of_m_selections(responses_with_rewards: pd.DataFrame, ms: Sequence[int] | None = None, *,
                         seed: int = 0, reward: str = REWARD, n: int | None = None,
                         allow_fewer: bool = False) -> pd.DataFrame:
    """The response best-of-m selects for every instruction and every m, from the same scored samples.

    Returns the selected rows (all columns of the input) with ``m`` and ``n_candidates`` added,
    ordered by m then instruction. ``ms`` defaults to 1, 2, 4, ..., n.
    """
    df = check_samples(responses_with_rewards, n, allow_fewer=allow_fewer, reward=reward)
    n = df.attrs["n"]
    ms = list(ms) if ms is not None else default_ms(n)
    bad = [m for m in ms if not 1 <= m <= n]
    if bad:
        raise ValueError(f"every m must be between 1 and n={n}; got {bad}")
    parts = []
    for iid, group in df.groupby("instruction_id", sort=False):
        rewards = group[reward].to_numpy(float)
        order = subset_order(iid, len(group), seed)
        for m in ms:
            k = min(m, len(group))
            row = group.iloc[[_pick(rewards, order, k)]].copy()
            row["m"], row["n_candidates"] = m, k
            parts.append(row)
    out = pd.concat(parts, ignore_index=True)
    order = {iid: i for i, iid in enumerate(dict.fromkeys(df["instruction_id"]))}
    out = out.assign(_o=out["instruction_id"].map(order)).sort_values(["m", "_o"], kind="stable").drop(columns="_o")
    return out.reset_index(drop=True)


def best_of_m_curve(rewards_by_instruction, ms: Sequence[int] | None = None, seed: int = 0, *,
                    reward: str = REWARD) -> pd.DataFrame:
    """Reward of best-of-m for each m, from one set of scored samples (no rescoring).

    ``rewards_by_instruction``: a scored responses frame (``instruction_id``, ``sample``,
    ``reward``), a mapping ``instruction_id -> rewards`` in sample order, or a 2-D array
    (instructions x samples). Columns: ``m``; ``selected`` (mean reward of the fixed-seed
    selections, as :func:`best_of_m_selections` makes them) with ``selected_sem``; ``expected``
    (mean over instructions of the exact expectation over all m-subsets); ``n_instructions``.
    Instructions with fewer than m samples are left out of that m's row (``n_instructions`` says
    how many count); use :func:`check_samples` first to insist on n samples each.
    """
    rewards = _rewards_dict(rewards_by_instruction, reward)
    if not rewards:
        raise ValueError("no rewards given")
    for iid, r in rewards.items():
        if len(r) == 0 or np.isnan(r).any():
            raise ValueError(f"instruction {iid}: {'no rewards' if len(r) == 0 else 'a reward is NaN'}")
    n = max(len(r) for r in rewards.values())
    ms = list(ms) if ms is not None else default_ms(n)
    orders = {iid: subset_order(iid, len(r), seed) for iid, r in rewards.items()}
    rows = []
    for m in ms:
        selected, expected = [], []
        for iid, r in rewards.items():
            if len(r) < m:
                continue
            selected.append(r[_pick(r, orders[iid], m)])
            expected.append(expected_best_of_m(r, m))
        k = len(selected)
        sem = float(np.std(selected, ddof=1) / math.sqrt(k)) if k > 1 else float("nan")
        rows.append({"m": m, "selected": float(np.mean(selected)) if k else float("nan"), "selected_sem": sem,
                     "expected": float(np.mean(expected)) if k else float("nan"), "n_instructions": k})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- comparisons

def agreement(selections_a: pd.DataFrame, selections_b: pd.DataFrame) -> pd.DataFrame:
    """For each m, the share of instructions where two reward models select the same sample.

    Inputs are :func:`best_of_m_selections` frames (or :func:`select_best` frames: one m). Columns:
    ``m``, ``same_sample`` (share), ``same_text`` (share selecting identical text, which can differ
    when two samples are identical), ``chance`` (1/m: two independent uniform picks among m
    distinct candidates), ``n_instructions``.
    """
    a = selections_a.assign(m=selections_a["m"] if "m" in selections_a else selections_a["n_samples"])
    b = selections_b.assign(m=selections_b["m"] if "m" in selections_b else selections_b["n_samples"])
    both = a.merge(b, on=["m", "instruction_id"], suffixes=("_a", "_b"))
    if not len(both):
        raise ValueError("the two selections share no (m, instruction_id)")
    both["same_sample"] = both["sample_a"] == both["sample_b"]
    both["same_text"] = both["response_a"] == both["response_b"]
    out = both.groupby("m").agg(same_sample=("same_sample", "mean"), same_text=("same_text", "mean"),
                                n_instructions=("instruction_id", "size")).reset_index()
    out["chance"] = 1.0 / out["m"]
    return out[["m", "same_sample", "same_text", "chance", "n_instructions"]]


def words(text: object) -> int:
    """Length of a response in whitespace-separated words."""
    return len(str(text or "").split())


def length_by_m(samples: pd.DataFrame, selections: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Mean length (words) of the outputs each reward model selects, per m, next to all samples.

    ``samples``: the scored samples the selections were made from; ``selections``: ``{name:
    best_of_m_selections frame}``. Columns: ``selector`` (a reward model's name, or "all samples"),
    ``m``, ``mean_words``, ``sem_words``, ``n``. The "all samples" rows repeat the mean length of
    every sample at each m (what best-of-m would give with no length preference).
    """
    rows = []
    all_len = samples["response"].map(words)
    ms = sorted(set().union(*[set(s["m"]) for s in selections.values()])) if selections else []
    for m in ms:
        rows.append({"selector": "all samples", "m": m, "mean_words": float(all_len.mean()),
                     "sem_words": float(all_len.std(ddof=1) / math.sqrt(len(all_len))), "n": len(all_len)})
    for name, sel in selections.items():
        for m, group in sel.groupby("m"):
            length = group["response"].map(words)
            rows.append({"selector": name, "m": int(m), "mean_words": float(length.mean()),
                         "sem_words": float(length.std(ddof=1) / math.sqrt(len(length))) if len(length) > 1
                         else float("nan"), "n": len(length)})
    return pd.DataFrame(rows)
