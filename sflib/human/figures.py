"""The human-feedback notebook's figure: ratings-vs-rankings consistency, humans beside the AI judge."""
from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from ..plots import plt, style
from ..plots.common import chance_line, interval_err, label_n, mark_small
from ..plots.style import styled


def plot_human_vs_ai(table: pd.DataFrame, *, paper: float | None = 0.40, title: str | None = None):
    """Bars of consistency with 95% bootstrap intervals, one per human and per AI judge row of
    :func:`sflib.consistency.agreement.human_vs_ai` (humans in one colour, the AI judge in another)."""
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


def _bar_label(judge: str, who: str, pairs: str) -> str:
    name = textwrap.fill(textwrap.shorten(str(judge), 30, placeholder="…"), 11)
    return f"{name}\n(AI,\n{'all' if pairs == 'all' else 'same'} pairs)" if who == "AI" else f"{name}\n(human)"


def _measure(measure: str) -> str:
    """``Cohen's kappa (quadratic weights, ordinal)`` -> ``Cohen's κ (quadratic)``, ... (short axis labels)."""
    short = measure.replace("kappa", "κ").replace("alpha", "α").replace(" weights, ordinal", "")
    return short.replace(" (unweighted)", "").replace(" (nominal)", "").replace(" (ordinal)", "")


@styled
def plot_consistency_beside_ai(table: pd.DataFrame, agree: pd.DataFrame | None = None, *,
                               paper: float | None = 0.40):
    """Consistency (with 95% CIs and n) of each human and of the AI judge; beside it, when ``agree`` has rows,
    the annotators' agreement on their overlap (one bar per measure, n on each). Project style."""
    t = table[table["n_compared"].fillna(0) > 0].reset_index(drop=True)
    has_agree = agree is not None and len(agree) > 0
    height = max(2.8, 0.28 * len(agree) + 0.9) if has_agree else 2.8  # two text lines per agreement bar
    fig, axes = style.figure("full", height, ncols=2 if has_agree else 1,
                             **({"width_ratios": [1.3, 1]} if has_agree else {}))
    ax = axes[0] if has_agree else axes
    x = np.arange(len(t))
    colours = [style.OURS if w == "human" else style.PAPER for w in t["who"]]
    bars = ax.bar(x, 100 * t["consistency"], color=colours,
                  yerr=interval_err(100 * t["consistency"], 100 * t["ci_low"], 100 * t["ci_high"]))
    if mark_small(bars, t["n_compared"]):
        ax.set_xlabel("hatched, faint: fewer than 10 pairs", color=style.GREY, fontsize=6.5)
    label_n(ax, x, 100 * t["ci_high"].fillna(t["consistency"]), t["n_compared"])
    if paper is not None:
        chance_line(ax, 100 * paper, f"paper: ~{100 * (1 - paper):.0f}% disagreement")
        ax.legend(loc="upper right")
    ax.set_xticks(x, [_bar_label(j, w, p) for j, w, p in zip(t["judge"], t["who"], t["pairs"])], fontsize=6)
    ax.set_ylim(0, 105)
    ax.set_ylabel("ratings agree with rankings (%)")
    ax.set_title("Consistency: humans (blue), AI judge (orange)")
    if has_agree:
        a = agree.reset_index(drop=True)
        y = np.arange(len(a))
        short = [f"{k}: {_measure(m)}\n{textwrap.shorten(who.replace(' · ', '–'), 30, placeholder='…')}"
                 for k, m, who in zip(a["kind"], a["measure"], a["annotators"])]
        ax2 = axes[1]
        bars2 = ax2.barh(y, a["value"].fillna(0), color=[style.AGREE if k == "ratings" else style.OKABE_ITO["sky"]
                                                        for k in a["kind"]])
        few = mark_small(bars2, a["n_items"])
        for yi, v, n in zip(y, a["value"], a["n_items"]):
            ax2.text(max(float(np.nan_to_num(v)), 0) + 0.02, yi, f"{'n/a' if pd.isna(v) else f'{v:.2f}'} (n={n})",
                     va="center", fontsize=6.5)
        ax2.axvline(0, color=style.CHANCE, lw=0.8)
        ax2.set_yticks(y, short, fontsize=6)
        ax2.invert_yaxis()
        ax2.set_xlim(min(-0.1, float(np.nanmin(a["value"].to_numpy(float), initial=0)) - 0.05), 1.25)
        ax2.set_xlabel("agreement (0 = chance, 1 = perfect)" + ("; hatched: fewer than 10 items" if few else ""))
        ax2.set_title("Agreement between annotators (overlap)")
    return fig
