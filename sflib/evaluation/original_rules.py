"""Stage 07, the original scripts' rules: what ``calc_win_rate_from_ratings_eval.py`` and
``calc_win_rate_from_rankings_eval.py`` would print on the recorded feedback CSVs, and a table of
those numbers beside ours (:func:`original_vs_ours`)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .. import io as sfio
from ..core.stats import ci_sem
from .winrate import DECISION_WIN, WinRate, _count


@dataclass
class OriginalWinRate:
    """What the original ``calc_win_rate_from_*_eval.py`` would print, and the counts behind it."""

    protocol: str
    winrate: float
    ci_sem: float
    n: int
    wins: int
    ties: int
    losses: int
    rows: dict[str, int]

    def summary(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}


def _original(protocol: str, win: np.ndarray, rows: dict[str, int]) -> OriginalWinRate:
    wins, ties, losses = _count(win)
    return OriginalWinRate(protocol=protocol, winrate=100 * float(win.mean()) if len(win) else float("nan"),
                           ci_sem=100 * ci_sem(win), n=len(win), wins=wins, ties=ties, losses=losses, rows=rows)


def original_winrate_from_ratings(reference_feedback: os.PathLike | str,
                                  policy_feedback: os.PathLike | str) -> OriginalWinRate:
    """The original rating-protocol rule: read the two headerless ratings CSVs, keep the first
    row per instruction in each, inner-join on the instruction text (input and output ignored),
    win = 1 if the policy's score > the reference's, 0.5 if equal; mean ×100 and 1.96·SEM ×100.
    Instructions rated in only one file are left out without notice — ``rows`` says how many.
    """
    ref = sfio.read_ratings(reference_feedback)
    pol = sfio.read_ratings(policy_feedback)
    ref, pol = ref[ref["score"].notna()], pol[pol["score"].notna()]  # rows stored without a valid score
    ref1 = ref.drop_duplicates("instruction", keep="first")
    pol1 = pol.drop_duplicates("instruction", keep="first")
    merged = ref1[["instruction", "score"]].merge(pol1[["instruction", "score"]], on="instruction",
                                                  suffixes=("_reference", "_policy"))
    sr, sp = merged["score_reference"].to_numpy(float), merged["score_policy"].to_numpy(float)
    win = np.where(sp > sr, 1.0, np.where(sp == sr, 0.5, 0.0))
    rows = {"reference_rows": len(ref), "policy_rows": len(pol), "reference_first_per_instruction": len(ref1),
            "policy_first_per_instruction": len(pol1), "matched": len(merged),
            "reference_only": len(ref1) - len(merged), "policy_only": len(pol1) - len(merged)}
    return _original("rating", win, rows)


def original_winrate_from_rankings(feedback: os.PathLike | str) -> OriginalWinRate:
    """The original ranking-protocol rule: every row of the headerless rankings CSV counts
    ((b) = 1, equal = 0.5, (a) = 0; the reference is output1 = (a)); mean ×100 and 1.96·SEM ×100.
    The script does not de-duplicate: ``rows['duplicate_instructions']`` says whether that matters.
    """
    df = sfio.read_rankings(feedback)
    decided = df["decision"].isin(list(DECISION_WIN))
    win = np.array([DECISION_WIN[d] for d in df["decision"][decided]], dtype=float)
    rows = {"rows": len(df), "duplicate_instructions": int(df["instruction"].duplicated().sum())}
    if not decided.all():  # rows stored without a decision (an invalid judge reply) cannot count
        rows["no_decision"] = int((~decided).sum())
    return _original("ranking", win, rows)



def original_vs_ours(reference_ratings: os.PathLike | str | None = None,
                     policy_ratings: os.PathLike | str | None = None, rankings: os.PathLike | str | None = None,
                     ours: Mapping[str, Mapping[str, WinRate]] | None = None) -> pd.DataFrame:
    """The original rules' numbers beside ours, one row per (protocol, computation).

    The original rating rule needs ``reference_ratings`` and ``policy_ratings`` (headerless CSVs), the
    ranking rule ``rankings``; ``ours`` maps a label (e.g. "ours (judge path)", "ours (from the CSVs)")
    to {protocol: :class:`WinRate`}. Columns: protocol, computation, winrate, ci_sem, ci_low, ci_high,
    lc_winrate, n, W/T/L, what is left out.
    """
    originals: dict[str, OriginalWinRate] = {}
    if reference_ratings is not None and policy_ratings is not None:
        originals["rating"] = original_winrate_from_ratings(reference_ratings, policy_ratings)
    if rankings is not None:
        originals["ranking"] = original_winrate_from_rankings(rankings)
    rows = []
    for proto in ("rating", "ranking"):
        o = originals.get(proto)
        if o is not None:
            rows.append({"protocol": proto, "computation": "original rules", "winrate": o.winrate, "ci_sem": o.ci_sem,
                         "ci_low": None, "ci_high": None, "lc_winrate": None, "n": o.n,
                         "W/T/L": f"{o.wins}/{o.ties}/{o.losses}",
                         "what is left out": ", ".join(f"{k}={v}" for k, v in o.rows.items())})
        for label, results in (ours or {}).items():
            r = results.get(proto)
            if r is None:
                continue
            rows.append({"protocol": proto, "computation": label, "winrate": r.winrate, "ci_sem": r.ci_sem,
                         "ci_low": r.ci_low, "ci_high": r.ci_high,
                         "lc_winrate": None if math.isnan(r.lc_winrate) else r.lc_winrate, "n": r.n,
                         "W/T/L": f"{r.wins}/{r.ties}/{r.losses}",
                         "what is left out": f"{r.n_dropped} of {r.n_items} dropped: "
                                             + "; ".join(f"{k}: {v}" for k, v in r.dropped.items())})
    return pd.DataFrame(rows, columns=["protocol", "computation", "winrate", "ci_sem", "ci_low", "ci_high",
                                       "lc_winrate", "n", "W/T/L", "what is left out"])
