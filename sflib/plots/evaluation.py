"""Stage 07 (evaluation): win rates per policy and protocol, by dataset, by relative length, and
the paper's numbers beside this run's."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .common import MIN_N, chance_line, clipped_yerr, interval_err, mark_small, nothing_to_draw, small_n_note
from .style import GREY, OURS, PALETTE, PAPER, figure, styled


def _legend(ax, names, **kw):
    """A legend of plain colour patches (a faint, hatched first bar must not set the legend's look)."""
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(facecolor=PALETTE[k % len(PALETTE)], label=n) for k, n in enumerate(names)]
              + [h for h, lab in zip(*ax.get_legend_handles_labels()) if lab.startswith("50%")], **kw)


def _err(rows, vals):
    """Error bars from the Wilson interval when the table has it, else 1.96·SEM clipped to [0, 100]."""
    if {"wilson_low", "wilson_high"} <= set(rows.columns):
        return interval_err(vals, rows["wilson_low"].to_numpy(dtype=float), rows["wilson_high"].to_numpy(dtype=float))
    return clipped_yerr(vals, rows["ci_sem"].to_numpy(dtype=float))


def _bar_text(ax, xs, ns, min_n):
    for xi, n in zip(xs, ns):
        if n == 0:
            ax.text(xi, 2, "n=0", ha="center", va="bottom", fontsize=6, color=GREY, rotation=90)
        else:
            ax.text(xi, 2, f"n={n}", ha="center", va="bottom", fontsize=6,
                    color="white" if n >= min_n else "black", rotation=90)


@styled
def plot_winrates(table, *, ax=None, title: str | None = None, min_n: int = MIN_N):
    """Grouped win-rate bars (policy × protocol) with Wilson 95% error bars (1.96·SEM clipped to [0, 100]
    for a table without ``wilson_low``/``wilson_high``), n on each bar and the 50% line (as good as the reference).

    ``table``: :func:`sflib.evaluation.results_table` (columns policy, protocol, winrate, ci_sem, n).
    Policies with no judgments are dropped; a single empty bar is left empty and labelled n=0;
    bars with n < ``min_n`` are faint and hatched.
    """
    table = table.copy()
    table["n"] = table["n"].fillna(0).astype(int)
    keep = table.groupby("policy")["n"].transform("sum") > 0
    table = table[keep]
    if not len(table):
        return nothing_to_draw("no win rate has any judgment: nothing to draw")
    fig, ax = (ax.figure, ax) if ax is not None else figure("full", 2.6)
    policies = list(dict.fromkeys(table["policy"]))
    protocols = list(dict.fromkeys(table["protocol"]))
    width = 0.8 / max(len(protocols), 1)
    x = np.arange(len(policies))
    faint = 0
    for k, proto in enumerate(protocols):
        rows = table[table["protocol"] == proto].set_index("policy").reindex(policies)
        ns = rows["n"].fillna(0).astype(int).to_numpy()
        vals = np.where(ns > 0, rows["winrate"].to_numpy(dtype=float), np.nan)
        err = _err(rows, vals)
        pos = x - 0.4 + width * (k + 0.5)
        bars = ax.bar(pos, np.nan_to_num(vals), width, label=f"{proto} protocol", color=PALETTE[k % len(PALETTE)])
        ax.errorbar(pos[ns > 0], vals[ns > 0], yerr=err[:, ns > 0], fmt="none", ecolor="black", lw=0.8)
        faint += mark_small(bars, ns, min_n)
        _bar_text(ax, pos, ns, min_n)
    chance_line(ax, 50, "50%: tie with the reference")
    ax.set_xticks(x, policies)
    ax.set_ylim(0, 100)
    ax.set_ylabel("win rate vs reference (%)")
    ref = ", ".join(dict.fromkeys(table["reference"].astype(str))) if "reference" in table else "the reference"
    what = "Wilson 95%" if "wilson_low" in table else "1.96·SEM, clipped to 0–100"
    ax.set_title(title or f"Win rate against {ref} (error bars: {what})")
    _legend(ax, [f"{p} protocol" for p in protocols], loc="upper left", bbox_to_anchor=(1.0, 1.0))
    small_n_note(ax, faint, min_n)
    return fig


@styled
def plot_winrates_by_dataset(by_dataset, *, min_n: int = MIN_N, title: str | None = None):
    """Per-dataset win-rate bars, one panel per protocol, one bar group per dataset (hue = policy).
    Datasets without judgments are dropped; bars under ``min_n`` are faint and hatched.

    ``by_dataset``: :func:`sflib.evaluation.by_dataset_table`.
    """
    df = by_dataset.copy()
    df["n"] = df["n"].fillna(0).astype(int)
    df = df[df.groupby("dataset")["n"].transform("sum") > 0]
    if not len(df):
        return nothing_to_draw("no dataset has any judgment: nothing to draw")
    protocols = list(dict.fromkeys(df["protocol"]))
    fig, axes = figure("full", 2.6, 1, len(protocols), squeeze=False, sharey=True)
    faint = 0
    for ax, proto in zip(axes[0], protocols):
        sub = df[df["protocol"] == proto]
        sub = sub[sub.groupby("dataset")["n"].transform("sum") > 0]
        datasets = list(dict.fromkeys(sub["dataset"]))
        policies = list(dict.fromkeys(df["policy"]))
        width = 0.8 / max(len(policies), 1)
        x = np.arange(len(datasets))
        for k, pol in enumerate(policies):
            rows = sub[sub["policy"] == pol].set_index("dataset").reindex(datasets)
            ns = rows["n"].fillna(0).astype(int).to_numpy()
            vals = np.where(ns > 0, rows["winrate"].to_numpy(dtype=float), np.nan)
            err = _err(rows, vals)
            pos = x - 0.4 + width * (k + 0.5)
            bars = ax.bar(pos, np.nan_to_num(vals), width, label=pol, color=PALETTE[k % len(PALETTE)])
            ax.errorbar(pos[ns > 0], vals[ns > 0], yerr=err[:, ns > 0], fmt="none", ecolor="black", lw=0.8)
            faint += mark_small(bars, ns, min_n)
            _bar_text(ax, pos, ns, min_n)
        chance_line(ax, 50, "50%")
        ax.set_xticks(x, datasets)
        ax.set_ylim(0, 100)
        ax.set_title(f"{proto} protocol")
    axes[0][0].set_ylabel("win rate vs reference (%)")
    _legend(axes[0][-1], list(dict.fromkeys(df["policy"])), loc="upper left", bbox_to_anchor=(1.0, 1.0))
    small_n_note(axes[0][0], faint, min_n)
    fig.suptitle(title or "Win rate by source dataset")
    return fig


@styled
def plot_length_analysis(lengths, buckets, *, min_n: int = MIN_N, title: str | None = None):
    """Left: mean output length (words) per generator. Right: win rate within buckets of the
    policy/reference length ratio, one line per policy × protocol (n at each point; points with
    n < ``min_n`` hollow), error bars clipped to [0, 100].

    ``lengths``: :func:`sflib.evaluation.mean_lengths`; ``buckets``: :func:`sflib.evaluation.length_analysis`.
    """
    fig, (a1, a2) = figure("full", 2.7, 1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    a1.bar(lengths["generator"], lengths["mean_words"], color=GREY)
    for i, (m, n) in enumerate(zip(lengths["mean_words"], lengths["n"])):
        a1.text(i, m, f"{m:.0f}\n(n={n})", ha="center", va="bottom", fontsize=6.5)
    a1.set_ylabel("mean output length (words)")
    a1.set_ylim(0, float(np.nanmax(lengths["mean_words"])) * 1.3 if len(lengths) else 1)
    a1.tick_params(axis="x", labelrotation=15)
    a1.set_title("Output length")
    labels = list(dict.fromkeys(buckets["bucket"]))
    x = np.arange(len(labels))
    k = 0
    for (pol, proto), g in buckets.groupby(["policy", "protocol"], sort=False):
        g = g.set_index("bucket").reindex(labels)
        ns = g["n"].fillna(0).astype(int).to_numpy()
        if ns.sum() == 0:
            continue
        v = np.where(ns > 0, g["winrate"].to_numpy(dtype=float), np.nan)
        color = PALETTE[k % len(PALETTE)]
        k += 1
        a2.errorbar(x, v, yerr=_err(g, v), color=color, marker=None,
                    label=f"{pol} · {proto}")
        big = ns >= min_n
        a2.plot(x[big], v[big], "o", color=color)
        a2.plot(x[~big & (ns > 0)], v[~big & (ns > 0)], "o", mfc="white", color=color)
        for xi, vi, n in zip(x, v, ns):
            if n:
                a2.annotate(f"{n}", (xi, vi), textcoords="offset points", xytext=(3, 3), fontsize=6)
    chance_line(a2, 50, "50%")
    a2.set_xticks(x, labels)
    a2.set_xlabel("policy output length / reference output length (words)")
    a2.set_ylabel("win rate (%)")
    a2.set_ylim(0, 100)
    a2.set_title(f"Win rate within length-ratio buckets (numbers: n; hollow: n < {min_n})")
    a2.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(title or "Win rate by relative output length")
    return fig


@styled
def plot_paper_vs_ours(table: pd.DataFrame, *, xlabel: str = "value (%)", ours_label: str = "this run",
                       paper_label: str = "paper", xlim: tuple[float, float] | None = (0, 100),
                       title: str | None = None):
    """Dot plot: the paper's number and this run's for each quantity (one row each).

    ``table``: :func:`sflib.core.paper.paper_vs_ours` (columns quantity, paper_value, ours, and
    optionally ours_low / ours_high for an interval). Values must share one unit (pass a subset);
    rows with neither value are dropped; a missing paper value is drawn as ours alone.
    """
    t = table.dropna(subset=["paper_value", "ours"], how="all").reset_index(drop=True)
    if not len(t):
        return nothing_to_draw("neither the paper nor this run has a value for these quantities: nothing to draw")
    fig, ax = figure("full", 0.3 * len(t) + 1.0)
    y = np.arange(len(t))
    ours = t["ours"].to_numpy(dtype=float)
    if {"ours_low", "ours_high"} <= set(t.columns):
        ax.errorbar(ours, y, xerr=interval_err(ours, t["ours_low"], t["ours_high"]), fmt="none", ecolor=OURS, lw=1)
    ax.plot(ours, y, "o", color=OURS, label=ours_label)
    ax.plot(t["paper_value"].to_numpy(dtype=float), y, "D", color=PAPER, label=paper_label)
    ax.set_yticks(y, [str(q) for q in t["quantity"]])
    ax.invert_yaxis()
    if xlim:
        ax.set_xlim(*xlim)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", color="0.92")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title or "The paper's numbers and this run's")
    return fig


__all__ = ["plot_winrates", "plot_winrates_by_dataset", "plot_length_analysis", "plot_paper_vs_ours"]
