"""Stage 07, the protocol effect measured **paired**: one policy's win rate under the rating protocol
against its win rate under the ranking protocol, on the instructions *both* protocols counted.

Comparing the two win rates as printed (e.g. 51 rating-protocol instructions against 46
ranking-protocol ones) mixes a protocol effect with a change of instructions. Here each
instruction counted under both protocols gives one difference ``d = win_rating − win_ranking``
(win values 1 / 0.5 / 0, so ``d`` is one of −1, −0.5, 0, 0.5, 1):

- the mean difference ×100 with a **paired bootstrap** interval (instructions resampled, both
  protocols' verdicts of an instruction kept together; :func:`sflib.core.stats.bootstrap_ci`);
- an **exact sign test** (:func:`scipy.stats.binomtest`, two-sided, p = 0.5) of "the rating protocol
  favoured the policy more" against "the ranking protocol did", instructions with ``d = 0`` left out;
- both win rates on the common instructions, with ties as 0.5 and excluding ties (wins / (wins +
  losses)), each with its Wilson interval.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy import stats

from ..core.stats import N_BOOT, bootstrap_ci
from .winrate import WinRate, excluding_ties, wilson_percent


@dataclass
class ProtocolEffect:
    """The paired protocol effect of one policy (×100; ``diff`` = rating − ranking)."""

    policy: str
    reference: str
    n: int                      # instructions counted under both protocols
    only_rating: int            # counted under the rating protocol only
    only_ranking: int           # counted under the ranking protocol only
    rating_winrate: float       # on the n common instructions, ties as 0.5
    rating_low: float
    rating_high: float
    ranking_winrate: float
    ranking_low: float
    ranking_high: float
    rating_excl_ties: float     # wins / (wins + losses) on the common instructions
    ranking_excl_ties: float
    diff: float
    diff_low: float             # paired bootstrap
    diff_high: float
    rating_better: int          # d > 0
    ranking_better: int         # d < 0
    same: int                   # d = 0
    p_sign: float               # exact two-sided sign test (NaN when every d is 0 or n = 0)

    def summary(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    def __str__(self) -> str:
        if self.n == 0:
            return (f"{self.policy}: no instruction counted under both protocols "
                    f"({self.only_rating} rating only, {self.only_ranking} ranking only)")
        return (f"{self.policy}, rating − ranking protocol on {self.n} common instructions: {self.diff:+.1f} "
                f"(paired bootstrap {self.diff_low:+.1f} to {self.diff_high:+.1f}); the rating protocol favoured "
                f"it on {self.rating_better}, the ranking protocol on {self.ranking_better}, same on {self.same} "
                f"(exact sign test p = {self.p_sign:.3g})")


def _wins(items: pd.DataFrame) -> pd.Series:
    return items.dropna(subset=["win"]).drop_duplicates("key").set_index("key")["win"].astype(float)


def _counts(w: np.ndarray) -> tuple[int, int]:
    return int((w > 0.5).sum()), int((w < 0.5).sum())


def protocol_effect(rating: WinRate, ranking: WinRate, *, n_boot: int = N_BOOT, seed: int = 0) -> ProtocolEffect:
    """The paired rating − ranking effect of one policy (same reference) on the instructions both counted."""
    if rating.protocol != "rating" or ranking.protocol != "ranking":
        raise ValueError(f"protocol_effect: give the rating then the ranking result, not {rating.protocol} "
                         f"and {ranking.protocol}")
    if rating.policy != ranking.policy or rating.reference != ranking.reference:
        raise ValueError(f"protocol_effect: the two results must be one policy against one reference "
                         f"({rating.policy} vs {rating.reference}; {ranking.policy} vs {ranking.reference})")
    wr, wk = _wins(rating.items), _wins(ranking.items)
    common = wr.index.intersection(wk.index)
    a, b = wr.loc[common].to_numpy(float), wk.loc[common].to_numpy(float)
    d = a - b
    n = len(d)
    nan = float("nan")
    lo, hi = bootstrap_ci(d, n_boot=n_boot, seed=seed)
    up, down = int((d > 0).sum()), int((d < 0).sum())
    p = float(stats.binomtest(up, up + down, 0.5).pvalue) if up + down else nan
    return ProtocolEffect(
        policy=rating.policy, reference=rating.reference, n=n,
        only_rating=int(len(wr) - n), only_ranking=int(len(wk) - n),
        rating_winrate=100 * a.mean() if n else nan, **dict(zip(("rating_low", "rating_high"), wilson_percent(a.sum(), n))),
        ranking_winrate=100 * b.mean() if n else nan,
        **dict(zip(("ranking_low", "ranking_high"), wilson_percent(b.sum(), n))),
        rating_excl_ties=excluding_ties(*_counts(a))[0], ranking_excl_ties=excluding_ties(*_counts(b))[0],
        diff=100 * d.mean() if n else nan, diff_low=100 * lo, diff_high=100 * hi,
        rating_better=up, ranking_better=down, same=int((d == 0).sum()), p_sign=p)


def protocol_effects(results: Iterable[WinRate], *, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """One row per (policy, reference) judged under both protocols: :func:`protocol_effect` as a table."""
    by = {}
    for r in results:
        by.setdefault((r.policy, r.reference), {})[r.protocol] = r
    rows = [protocol_effect(g["rating"], g["ranking"], n_boot=n_boot, seed=seed).summary()
            for g in by.values() if {"rating", "ranking"} <= set(g)]
    return pd.DataFrame(rows, columns=list(ProtocolEffect.__dataclass_fields__))
