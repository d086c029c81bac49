"""Stage 04 (consistency of ratings and rankings): agreement matrices, disagreement by rating gap,
by group, and against the length difference of the two responses — every axis in one direction,
**disagreement**, as the paper states it (its 60% is drawn at 60)."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..core.stats import wilson, word_counts
from .common import MIN_N, interval_err, label_n, mark_small, nothing_to_draw, small_n_note
from .style import AGREE, EQUAL, OKABE_ITO, OPPOSITE, PAPER, figure, styled

_DECISION_TICKS = ["a\n(resp. 1)", "b\n(resp. 2)", "equal"]


@styled
def plot_consistency_matrices(report, *, title: str | None = None):
    """Heatmaps of a :class:`sflib.consistency.ConsistencyReport`'s 3x3 agreement matrix: counts
    (left) and row-normalised (right: of the pairs the ratings call X, the share the rankings call
    Y). The outlined diagonal is agreement."""
    import seaborn as sns
    from matplotlib.patches import Rectangle

    fig, axes = figure("full", 2.9, 1, 2)
    panels = [(np.asarray(report.matrix), "d", "Blues", "counts"),
              (np.asarray(report.matrix_normalised.fillna(0), dtype=float), ".0%", "Purples",
               "share of each ratings row")]
    for ax, (m, fmt, cmap, name) in zip(axes, panels):
        sns.heatmap(m, annot=True, fmt=fmt, cmap=cmap, cbar=False, ax=ax, square=True, linewidths=0.5,
                    linecolor="white", vmin=0, vmax=1 if fmt != "d" else None, annot_kws={"fontsize": 7.5},
                    xticklabels=_DECISION_TICKS, yticklabels=_DECISION_TICKS)
        for i in range(3):
            ax.add_patch(Rectangle((i, i), 1, 1, fill=False, edgecolor=OKABE_ITO["orange"], lw=2))
        ax.set_xlabel("rankings decision")
        ax.set_ylabel("ratings (higher score wins)")
        ax.set_title(name)
        ax.tick_params(axis="y", labelrotation=0)
        ax.tick_params(axis="x", labelrotation=0)
    lo, hi = report.ci.get("consistency", (np.nan, np.nan))
    ci = f", 95% CI {100 * (1 - hi):.0f}–{100 * (1 - lo):.0f}%" if not np.isnan(lo) else ""
    fig.suptitle(title or (f"Ratings vs rankings on {report.n_compared} pairs: off the diagonal (disagreement) "
                           f"{100 * (1 - report.consistency):.0f}%{ci}; kappa {report.kappa:.2f}"))
    return fig


@styled
def plot_consistency_by_gap(by_gap, *, overall: float | None = None, min_n: int = MIN_N, title: str | None = None):
    """Disagreement by rating gap |score1 − score2| (left, bars with 95% Wilson intervals and n) and what
    the pairs are (right: agree, one side saying equal, opposite preferences). ``overall``: the
    consistency over all pairs (drawn as disagreement, dashed). Empty gaps are dropped; gaps with fewer
    than ``min_n`` pairs are faint and hatched. Disagreement, as the paper states it, on every axis."""
    by_gap = by_gap[by_gap["n"].fillna(0) > 0].reset_index(drop=True)
    if not len(by_gap):
        return nothing_to_draw("no compared pairs: nothing to draw")
    fig, (a1, a2) = figure("full", 2.7, 1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
    x = np.arange(len(by_gap))
    labels = [str(g) for g in by_gap["gap"]]
    dis = 100 * (1 - by_gap["consistency"].to_numpy(dtype=float))
    err = interval_err(dis, 100 * (1 - by_gap["ci_high"].to_numpy(dtype=float)),
                       100 * (1 - by_gap["ci_low"].to_numpy(dtype=float)))
    bars = a1.bar(x, dis, color=OKABE_ITO["vermillion"], width=0.65)
    faint = mark_small(bars, by_gap["n"], min_n)
    a1.errorbar(x, dis, yerr=err, fmt="none", ecolor="black", lw=0.8)
    label_n(a1, x, dis + err[1], by_gap["n"], min_n)
    if overall is not None:
        a1.axhline(100 * (1 - overall), color=PAPER, ls="--", lw=1)
    a1.set_xticks(x, labels)
    a1.set_xlabel("rating gap |score1 − score2| (0 = ratings tie)")
    a1.set_ylabel("ratings and rankings disagree (%)")
    a1.set_ylim(0, 110)
    a1.set_title("Disagreement by rating gap" + (f" (dashed: all pairs, {100 * (1 - overall):.0f}%)"
                                                  if overall is not None else ""))
    small_n_note(a1, faint, min_n)
    parts = [("opposite preference", by_gap["opposite"], OPPOSITE), ("one side says equal", by_gap["one_side_equal"], EQUAL),
             ("agree", by_gap["consistency"], AGREE)]
    bottom = np.zeros(len(by_gap))
    for name, v, color in parts:
        v = 100 * v.to_numpy(dtype=float)
        a2.bar(x, v, bottom=bottom, label=name, color=color, width=0.65)
        bottom += v
    a2.set_xticks(x, labels)
    a2.set_xlabel("rating gap |score1 − score2|")
    a2.set_ylabel("share of pairs (%)")
    a2.set_ylim(0, 100)
    a2.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    a2.set_title("What the pairs are")
    if title:
        fig.suptitle(title)
    return fig


@styled
def plot_consistency_by_group(table, *, label: str | None = None, title: str | None = None,
                              reference: float | None = None, reference_label: str = "reference",
                              min_n: int = MIN_N):
    """Horizontal bars of **disagreement** (100 − consistency) with 95% intervals per group — a ``by_source``
    table (label column ``source``) or :func:`sflib.consistency.compare_annotators`' table (annotators in
    the index). ``reference``: a disagreement share drawn dashed (e.g. 0.6: the paper's 60% disagreement,
    drawn at 60). Empty groups are left out; groups with fewer than ``min_n`` pairs are faint and hatched."""
    label = label or table.index.name or "source"
    t = table.reset_index() if label not in table.columns and table.index.name == label else table
    if label not in t.columns:
        t = t.reset_index().rename(columns={t.index.name or "index": label})
    ncol = "n" if "n" in t else "n_compared"
    t = t[t[ncol].fillna(0) > 0].reset_index(drop=True)
    if not len(t):
        return nothing_to_draw(f"no group with compared pairs by {label}: nothing to draw")
    n = t[ncol].astype(int)
    fig, ax = figure("full", 0.32 * len(t) + 1.1)
    y = np.arange(len(t))
    dis = 100 * (1 - t["consistency"].to_numpy(dtype=float))
    err = interval_err(dis, 100 * (1 - t["ci_high"].to_numpy(dtype=float)), 100 * (1 - t["ci_low"].to_numpy(dtype=float)))
    bars = ax.barh(y, dis, color=OKABE_ITO["vermillion"], height=0.6)
    faint = mark_small(bars, n, min_n)
    ax.errorbar(dis, y, xerr=err, fmt="none", ecolor="black", lw=0.8)
    for yi, c, k, top in zip(y, dis, n, dis + err[1]):
        ax.text(top + 1.5, yi, f"{c:.0f}%  (n={k}{', few' if k < min_n else ''})", va="center", fontsize=6.5)
    if reference is not None:
        ax.axvline(100 * reference, color=PAPER, ls="--", lw=1, label=reference_label)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_yticks(y, [str(v) for v in t[label]])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("ratings and rankings disagree (%)")
    ax.set_title(title or f"Disagreement by {label}")
    small_n_note(ax, faint, min_n)
    return fig


DEFAULT_LENGTH_BINS = (0, 10, 25, 50, 100, np.inf)


def _length_diff(pairs: pd.DataFrame, lengths: Mapping | None) -> pd.Series:
    if "length_diff" in pairs:
        return pd.to_numeric(pairs["length_diff"], errors="coerce").abs()
    if {"response1", "response2"} <= set(pairs.columns):
        w = [word_counts(pairs[c]) for c in ("response1", "response2")]
        return (w[0] - w[1]).abs()
    if lengths is not None:
        m = pd.Series(lengths, dtype=float)
        return (pairs["response_id_1"].map(m) - pairs["response_id_2"].map(m)).abs()
    raise ValueError("pairs need a length_diff column, response1/response2 texts, or lengths={response_id: words}")


@styled
def plot_disagreement_vs_length(pairs: pd.DataFrame, *, lengths: Mapping | None = None, bins=DEFAULT_LENGTH_BINS,
                                min_n: int = MIN_N, title: str | None = None):
    """Share of pairs where ratings and rankings disagree, by the length difference (words) of the
    two responses, with 95% Wilson intervals and n; the dashed line is the rate over all pairs.

    ``pairs``: :attr:`ConsistencyReport.pairs` (``agree`` column) plus the length difference as a
    ``length_diff`` column, the two texts (``response1``, ``response2``), or ``lengths`` mapping
    ``response_id`` to words. Empty bins are dropped; bins under ``min_n`` are faint and hatched.
    """
    diff = _length_diff(pairs, lengths)
    ok = diff.notna() & pairs["agree"].notna()
    df = pd.DataFrame({"diff": diff[ok], "disagree": ~pairs.loc[ok, "agree"].astype(bool)})
    if not len(df):
        return nothing_to_draw("no pair with a known length difference: nothing to draw")
    edges = list(bins)
    names = [f"{int(lo)}–{int(hi) - 1}" if np.isfinite(hi) else f"≥{int(lo)}" for lo, hi in zip(edges[:-1], edges[1:])]
    df["bin"] = pd.cut(df["diff"], edges, right=False, labels=names)
    g = df.groupby("bin", observed=False)["disagree"].agg(["sum", "count"]).reset_index()
    g = g[g["count"] > 0].reset_index(drop=True)
    rate = 100 * g["sum"] / g["count"]
    ci = [wilson(k, n) for k, n in zip(g["sum"], g["count"])]
    err = interval_err(rate, [100 * c[0] for c in ci], [100 * c[1] for c in ci])
    fig, ax = figure("column", 2.5)
    x = np.arange(len(g))
    bars = ax.bar(x, rate, color=OKABE_ITO["vermillion"], width=0.65)
    faint = mark_small(bars, g["count"], min_n)
    ax.errorbar(x, rate, yerr=err, fmt="none", ecolor="black", lw=0.8)
    label_n(ax, x, rate + err[1], g["count"], min_n)
    overall = 100 * df["disagree"].mean()
    ax.axhline(overall, color=PAPER, ls="--", lw=1, label=f"all pairs {overall:.0f}% (n={len(df)})")
    ax.set_xticks(x, [str(b) for b in g["bin"]])
    ax.set_xlabel("|length difference| of the two responses (words)")
    ax.set_ylabel("ratings and rankings disagree (%)")
    ax.set_ylim(0, 110)
    ax.legend(loc="upper left")
    ax.set_title(title or "Disagreement by length difference")
    small_n_note(ax, faint, min_n)
    return fig


__all__ = ["plot_consistency_matrices", "plot_consistency_by_gap", "plot_consistency_by_group",
           "plot_disagreement_vs_length"]
