"""The human-feedback notebook's figure: ratings-vs-rankings consistency, humans beside the AI judge."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..plots import plt


def plot_human_vs_ai(table: pd.DataFrame, *, paper: float | None = 0.40, title: str | None = None):
    """Bars of consistency with 95% bootstrap intervals, one per human and per AI judge row of
    :func:`sflib.agreement.human_vs_ai` (humans in one colour, the AI judge in another)."""
    t = table[table["n_compared"] > 0].reset_index(drop=True)
    labels = [f"{j}\n({p}, n={n})" if w == "AI" else f"{j}\n(n={n})"
              for j, w, p, n in zip(t["judge"], t["who"], t["pairs"], t["n_compared"])]
    colours = ["#4C72B0" if w == "human" else "#DD8452" for w in t["who"]]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(t) + 2), 3.8))
    x = np.arange(len(t))
    lo = (t["consistency"] - t["ci_low"]).clip(lower=0).fillna(0)
    hi = (t["ci_high"] - t["consistency"]).clip(lower=0).fillna(0)
    ax.bar(x, t["consistency"], color=colours, yerr=[lo, hi], capsize=4)
    if paper is not None:
        ax.axhline(paper, color="grey", ls="--", lw=1, label=f"paper: ~{100 * (1 - paper):.0f}% disagreement")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("consistency (ratings agree with rankings)")
    ax.set_title(title or "Ratings vs rankings consistency: humans (blue) and the AI judge (orange)")
    fig.tight_layout()
    return fig
