"""Stages 02 (ratings) and 03 (rankings): score distributions, decisions and tie rate, position bias."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.stats import wilson
from .common import MIN_N, chance_line, interval_err, label_n, mark_small, nothing_to_draw, small_n_note
from .style import EQUAL, OKABE_ITO, PALETTE, figure, styled

SCORES = tuple(range(1, 8))
DECISIONS = ("a", "b", "equal")
_DECISION_LABELS = {"a": "a (response 1)", "b": "b (response 2)", "equal": "equal"}


def _valid_scores(ratings: pd.DataFrame) -> pd.DataFrame:
    """Valid scores, one per response (per judge): the one counting rule, :func:`sflib.feedback.clean.clean_ratings`."""
    from ..feedback.clean import clean_ratings

    return clean_ratings(ratings)[0]


@styled
def plot_score_distribution(ratings: pd.DataFrame, *, by: str | None = "source", min_n: int = MIN_N,
                            scores=SCORES, reference: dict | None = None, reference_label: str = "paper",
                            title: str | None = None):
    """Distribution of rating scores: all rated responses (left, counts and shares) and the share of
    each score within each group of ``by`` (right; e.g. ``"source"`` or ``"judge"``).

    Only valid scores count, each response once (a response rated twice keeps its first rating:
    :func:`sflib.feedback.clean.clean_ratings`, so n here is the number of responses rated everywhere). Empty groups are
    dropped; groups with fewer than ``min_n`` ratings are drawn faint and hatched, with n in the legend.
    ``reference``: ``{score: share}`` drawn as
    markers on the left panel (e.g. a published distribution).
    """
    df = _valid_scores(ratings)
    scores = list(scores)
    groups = []
    if by and by in df.columns:
        groups = [(str(g), sub) for g, sub in df.groupby(df[by].fillna("unknown").astype(str), sort=True) if len(sub)]
    two = len(groups) > 1
    fig, axes = figure("full" if two else "column", 2.5, 1, 2 if two else 1, squeeze=False)
    ax = axes[0][0]
    counts = df["score"].value_counts().reindex(scores, fill_value=0)
    x = np.arange(len(scores))
    ax.bar(x, counts.to_numpy(), color=OKABE_ITO["blue"], width=0.7)
    total = int(counts.sum())
    for xi, c in zip(x, counts):
        if c:
            ax.text(xi, c, f"{100 * c / total:.0f}%", ha="center", va="bottom", fontsize=6.5)
    if reference:
        ref = np.array([reference.get(s, np.nan) for s in scores], dtype=float) * total
        ax.plot(x, ref, "D", color=OKABE_ITO["orange"], ms=4, label=reference_label)
        ax.legend()
    ax.set_xticks(x, [str(s) for s in scores])
    ax.set_xlabel("score (1 = terrible, 7 = perfect)")
    ax.set_ylabel("responses")
    ax.set_ylim(0, max(1, counts.max()) * 1.18)
    ax.set_title(f"All rated responses (n={total})")
    if two:
        ax2 = axes[0][1]
        width = 0.8 / len(groups)
        faint = 0
        for k, (g, sub) in enumerate(groups):
            share = sub["score"].value_counts(normalize=True).reindex(scores, fill_value=0) * 100
            n = len(sub)
            label = f"{g} (n={n}{', few' if n < min_n else ''})"
            bars = ax2.bar(x - 0.4 + width * (k + 0.5), share.to_numpy(), width, label=label,
                           color=PALETTE[k % len(PALETTE)])
            faint += mark_small(bars, [n] * len(bars), min_n) > 0
        ax2.set_xticks(x, [str(s) for s in scores])
        ax2.set_xlabel("score")
        ax2.set_ylabel(f"share of the {by}'s ratings (%)")
        ax2.set_ylim(0, 100)
        ax2.set_title(f"By {by}")
        ax2.legend(ncols=1 if len(groups) < 4 else 2)
        small_n_note(ax2, faint, min_n)
    if title:
        fig.suptitle(title)
    return fig


def decision_table(rankings: pd.DataFrame | pd.Series) -> pd.DataFrame:
    """``pairs`` and ``share`` per decision (a, b, equal) over pairs with a decision."""
    if isinstance(rankings, pd.Series):
        counts = rankings.reindex(list(DECISIONS), fill_value=0).astype(int)
    else:
        df = rankings
        if "valid" in df.columns:
            df = df[df["valid"].fillna(False).astype(bool)]
        counts = df["decision"].value_counts().reindex(list(DECISIONS), fill_value=0).astype(int)
    total = int(counts.sum())
    return pd.DataFrame({"pairs": counts, "share": counts / total if total else np.nan})


@styled
def plot_decisions(rankings: pd.DataFrame | pd.Series, *, reference_tie_rate: float | None = None,
                   reference_label: str = "paper", title: str | None = None):
    """Rankings decisions (a, b, equal) over pairs with a decision, the share on each bar and the
    tie rate (equal) with its 95% Wilson interval. ``rankings``: a rankings table (``decision``,
    optionally ``valid``) or counts indexed by decision. ``reference_tie_rate`` (0-1) draws a
    published tie rate as a dashed line on the "equal" bar."""
    table = decision_table(rankings)
    total = int(table["pairs"].sum())
    if not total:
        return nothing_to_draw("no decided pairs: nothing to draw")
    fig, ax = figure("column", 2.4)
    x = np.arange(len(DECISIONS))
    colors = [OKABE_ITO["blue"], OKABE_ITO["orange"], EQUAL]
    ax.bar(x, table["pairs"].to_numpy(), color=colors, width=0.65)
    for xi, (c, s) in zip(x, zip(table["pairs"], table["share"])):
        ax.text(xi, c, f"{c}\n({100 * s:.0f}%)", ha="center", va="bottom", fontsize=6.5)
    if reference_tie_rate is not None:
        ax.hlines(reference_tie_rate * total, 2 - 0.4, 2 + 0.4, colors=OKABE_ITO["vermillion"], linestyles="--",
                  label=f"{reference_label}: {100 * reference_tie_rate:.0f}% ties")
        ax.legend(loc="upper right")
    ax.set_xticks(x, [_DECISION_LABELS[d] for d in DECISIONS])
    ax.set_ylabel("pairs")
    ax.set_ylim(0, table["pairs"].max() * 1.3)
    lo, hi = wilson(table.loc["equal", "pairs"], total)
    ax.set_title(title or f"Decisions on {total} pairs; equal: {100 * table.loc['equal', 'share']:.0f}% "
                          f"(95% CI {100 * lo:.0f}–{100 * hi:.0f}%)")
    return fig


@styled
def plot_position_bias(pb: dict, *, measured: bool, reason: str | None = None, title: str | None = None):
    """How often the judge picks the output shown first, per presentation order, with 95% Wilson
    intervals and the no-preference line at 50%, and whether the two orders agree.

    ``pb``: :func:`sflib.feedback.rankings.position_bias`. ``measured`` must say whether the judge really
    saw both orders: with recorded verdicts replayed into both slots, or one order only, the
    numbers are true by construction and nothing is drawn (the reason is printed instead).
    """
    if not measured:
        return nothing_to_draw("position bias not shown: " + (reason or "it was not measured (each pair was not "
                                                                          "judged in both presentation orders)"))
    n = int(pb.get("pairs", 0) or 0)
    if not n:
        return nothing_to_draw("position bias not shown: no pair has a valid verdict in both orders")
    fig, (a1, a2) = figure("full", 2.4, 1, 2, gridspec_kw={"width_ratios": [3, 2]})
    names = ["response 1 shown first", "response 2 shown first", "both orders"]
    rates = [pb["first_pick_rate_12"], pb["first_pick_rate_21"], pb["first_pick_rate"]]
    ns = [n, n, 2 * n]
    ci = [wilson(round(r * m), m) for r, m in zip(rates, ns)]
    vals = 100 * np.array(rates, dtype=float)
    err = interval_err(vals, [100 * c[0] for c in ci], [100 * c[1] for c in ci])
    x = np.arange(3)
    a1.bar(x, vals, color=OKABE_ITO["blue"], width=0.6)
    a1.errorbar(x, vals, yerr=err, fmt="none", ecolor="black", lw=0.8)
    chance_line(a1, 50, "no position preference (50%)")
    a1.set_xticks(x, names)
    a1.set_ylim(0, 100)
    a1.set_ylabel("first-shown output picked (%)")
    a1.legend(loc="upper left")
    label_n(a1, x, [2] * 3, ns, min_n=MIN_N)
    outcome = [pb["agree"], pb["first_first"], pb["second_second"]]
    a2.bar(np.arange(3), outcome, color=[OKABE_ITO["green"], OKABE_ITO["vermillion"], OKABE_ITO["purple"]], width=0.6)
    a2.set_xticks(np.arange(3), ["orders agree", "first twice", "second twice"])
    a2.set_ylabel("pairs")
    a2.set_title(f"{n} pairs judged in both orders")
    fig.suptitle(title or "Position: first-shown picks per order")
    return fig


__all__ = ["plot_score_distribution", "plot_decisions", "plot_position_bias", "decision_table", "wilson"]
