"""Judge panels: several judges on the same items, their verdicts per judge and pooled, and how
much they agree.

Each judge goes through :func:`sflib.feedback.annotate.annotate` with the same store (cached, resumable,
online or batch), so adding a judge to a panel asks only that judge. ::

    panel = run_panel(["openai:gpt-4o-mini", "openai:gpt-4.1-mini", "recorded"], requests,
                      store=store, template_version=..., parse=parse_score)
    panel.wide       # one row per item: value_<judge>, soft_<judge>, pooled, pooled_soft, votes
    panel.agreement  # pairwise: judge_1, judge_2, n (items both answered), agreement, kappa

For frames that :func:`sflib.feedback.ratings.rate` / :func:`sflib.feedback.rankings.rank` already returned (one
per judge), :func:`pool_frames` gives the same result without asking anything.

Pooling: ``mean`` for numbers (scores), ``majority`` for labels (decisions; a tie gives no pooled
verdict, ``None``); ``auto`` picks by the values. Agreement: the share of items on which two judges
gave the same verdict, and Cohen's kappa (:func:`sflib.core.stats.cohen_kappa`, NaN when both judges gave one identical
label everywhere; ``kappa_weights="quadratic"`` for ordinal scores), on the
items both judges answered validly.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .annotate import annotate
from ..core.stats import cohen_kappa  # the one kappa (NaN when chance agreement is 1)
from ..judges import get_judge
from ..judges.base import Judge, Request


@dataclass
class Panel:
    wide: pd.DataFrame
    agreement: pd.DataFrame
    stats: dict[str, dict] = field(default_factory=dict)

    @property
    def judges(self) -> list[str]:
        return [c.removeprefix("value_") for c in self.wide.columns if c.startswith("value_")]


def _pool(values: list, how: str) -> Any:
    values = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if not values:
        return None
    if how == "mean":
        return float(np.mean([float(v) for v in values]))
    counts = Counter(values).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return None  # a tie: no majority
    return counts[0][0]


def _auto(values: Iterable) -> str:
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                  for v in values if v is not None and not (isinstance(v, float) and np.isnan(v)))
    return "mean" if numeric else "majority"


def pool_frames(frames: dict[str, pd.DataFrame], value: str, *, soft: str | None = None,
                pool: str = "auto", kappa_weights: str | None = None) -> Panel:
    """A :class:`Panel` from one frame per judge (same items, same order): ``value`` is the
    verdict column (e.g. ``score`` or ``decision``; NaN/None = no valid verdict), ``soft`` an
    optional soft column (``expected_score``, ``p_a``) pooled by its mean."""
    names = list(frames)
    if not names:
        raise ValueError("a panel needs at least one judge")
    n = {len(df) for df in frames.values()}
    if len(n) != 1:
        raise ValueError(f"the judges' frames have different lengths: "
                         f"{ {k: len(v) for k, v in frames.items()} }")
    wide = pd.DataFrame(index=range(n.pop()))
    for name, df in frames.items():
        wide[f"value_{name}"] = list(df[value].astype(object).where(df[value].notna(), None))
        if soft is not None and soft in df.columns:
            wide[f"soft_{name}"] = pd.to_numeric(df[soft], errors="coerce").values
    cols = [f"value_{k}" for k in names]
    how = _auto(v for c in cols for v in wide[c]) if pool == "auto" else pool
    if how not in ("mean", "majority"):
        raise ValueError(f"pool must be 'auto', 'mean' or 'majority', got {pool!r}")
    pooled = [_pool(list(row), how) for row in wide[cols].itertuples(index=False)]
    wide["pooled"] = (pd.Series(pooled, dtype=float) if how == "mean"
                      else pd.Series(pooled, dtype=object))
    wide["votes"] = wide[cols].notna().sum(axis=1)
    soft_cols = [c for c in wide.columns if c.startswith("soft_")]
    if soft_cols:
        wide["pooled_soft"] = wide[soft_cols].mean(axis=1, skipna=True)
    rows = []
    for a, b in combinations(names, 2):
        both = wide[f"value_{a}"].notna() & wide[f"value_{b}"].notna()
        x, y = list(wide.loc[both, f"value_{a}"]), list(wide.loc[both, f"value_{b}"])
        rows.append({"judge_1": a, "judge_2": b, "n": int(both.sum()),
                     "agreement": float(np.mean([p == q for p, q in zip(x, y)])) if x else float("nan"),
                     "kappa": cohen_kappa(x, y, kappa_weights if how == "mean" else None)})
    agreement = pd.DataFrame(rows, columns=["judge_1", "judge_2", "n", "agreement", "kappa"])
    stats = {k: dict(getattr(df, "attrs", {}).get("stats", {})) for k, df in frames.items()}
    return Panel(wide=wide, agreement=agreement, stats=stats)


def run_panel(judges: Iterable[str | Judge], requests: list[Request], *, store, template_version: str,
              parse, pool: str = "auto", kappa_weights: str | None = None, **annotate_options) -> Panel:
    """Ask every judge every request through :func:`sflib.feedback.annotate.annotate` (one store for all;
    ``annotate_options`` such as ``mode="batch"`` or ``retry_invalid`` go to each call)."""
    frames = {}
    for judge in judges:
        judge = get_judge(judge)
        if judge.name in frames:
            raise ValueError(f"judge {judge.name} is twice in the panel")
        df = annotate(judge, requests, store=store, template_version=template_version, parse=parse,
                      **annotate_options)
        df = df.assign(verdict=df["value"].where(df["valid"]))
        frames[judge.name] = df
    return pool_frames(frames, "verdict", soft="soft", pool=pool, kappa_weights=kappa_weights)
