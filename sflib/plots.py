"""Plotting helpers shared by the notebooks. Every figure is saved as PNG and PDF under ``figures/``."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

if not os.environ.get("DISPLAY") and "ipykernel" not in str(matplotlib.get_backend()).lower():
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .paths import figures_dir  # noqa: E402


def save_figure(fig, name: str, folder: os.PathLike | str | None = None) -> list[Path]:
    """Save ``fig`` as ``<folder>/<name>.png`` and ``.pdf`` (folder defaults to ``figures/``)."""
    out = Path(folder) if folder is not None else figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        p = out / f"{name}.{ext}"
        fig.savefig(p, dpi=150 if ext == "png" else None, bbox_inches="tight")
        paths.append(p)
    return paths


__all__ = ["plt", "save_figure"]


# ----------------------------------------------------------------------------- 00 data

def plot_source_counts(counts, title="Instructions per source dataset"):
    """Bar chart of a ``source x table`` count frame (``sflib.inventory.source_counts``)."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    counts.plot.bar(ax=ax)
    ax.set_xlabel("source dataset")
    ax.set_ylabel("instructions")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=0)
    fig.tight_layout()
    return fig


def plot_length_distributions(lengths, kind, clip_quantile=0.99, title=None):
    """Histograms (one line per collection) of word counts for one ``kind`` of text."""
    import seaborn as sns

    sub = lengths[lengths["kind"] == kind]
    clip = float(sub["words"].quantile(clip_quantile)) if len(sub) else 0
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.histplot(data=sub.assign(words=sub["words"].clip(upper=clip)), x="words", hue="collection",
                 element="step", stat="density", common_norm=False, bins=40, ax=ax)
    ax.set_xlabel(f"{kind} length (words; clipped at the {int(clip_quantile * 100)}th percentile, {clip:.0f})")
    ax.set_title(title or f"{kind.capitalize()} length distributions")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- evaluation (stage 8)

def plot_winrates(table, *, ax=None, title: str | None = None, min_n: int = 0):
    """Grouped win-rate bars (policy × protocol) with 1.96·SEM error bars and n on each bar.

    ``table``: :func:`sflib.evaluation.results_table` (columns policy, protocol, winrate, ci_sem, n).
    A bar with n = 0 is left empty and labelled so (nothing could be counted); bars with
    n < ``min_n`` are drawn faint and hatched (too few judgments to mean anything).
    """
    import numpy as np

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 4))
    policies = list(dict.fromkeys(table["policy"]))
    protocols = list(dict.fromkeys(table["protocol"]))
    width = 0.8 / max(len(protocols), 1)
    x = np.arange(len(policies))
    for k, proto in enumerate(protocols):
        rows = table[table["protocol"] == proto].set_index("policy")
        vals = [rows["winrate"].get(p, np.nan) if p in rows.index else np.nan for p in policies]
        errs = [rows["ci_sem"].get(p, np.nan) if p in rows.index else np.nan for p in policies]
        ns = [int(rows["n"].get(p, 0)) if p in rows.index else 0 for p in policies]
        pos = x - 0.4 + width * (k + 0.5)
        bars = ax.bar(pos, np.nan_to_num(vals), width, yerr=np.nan_to_num(errs), capsize=4, label=f"{proto} protocol")
        for bar, n in zip(bars, ns):
            if 0 < n < min_n:
                bar.set_alpha(0.35)
                bar.set_hatch("//")
        for xi, v, n in zip(pos, vals, ns):
            label = (f"n={n}" + ("\n(too few)" if n < min_n else "")) if n else "n=0\n(no judgments)"
            ax.text(xi, 2, label, ha="center", va="bottom", fontsize=8, color="white" if n >= max(min_n, 1) else "black")
    ax.axhline(50, color="grey", lw=1, ls="--")
    ax.set_xticks(x, policies)
    ax.set_ylim(0, 110)
    ax.set_ylabel("win rate vs reference (%)")
    ref = ", ".join(dict.fromkeys(table["reference"])) if "reference" in table else "reference"
    ax.set_title(title or f"Win rate against {ref} (error bars: 1.96·SEM)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_winrates_by_dataset(by_dataset, *, title: str | None = None):
    """Per-dataset win-rate bars, one panel per protocol, one bar group per dataset (hue = policy).

    ``by_dataset``: :func:`sflib.evaluation.by_dataset_table`.
    """
    import numpy as np

    protocols = list(dict.fromkeys(by_dataset["protocol"]))
    fig, axes = plt.subplots(1, max(len(protocols), 1), figsize=(5.5 * max(len(protocols), 1), 3.8),
                             squeeze=False, sharey=True)
    for ax, proto in zip(axes[0], protocols):
        sub = by_dataset[by_dataset["protocol"] == proto]
        datasets = list(dict.fromkeys(sub["dataset"]))
        policies = list(dict.fromkeys(sub["policy"]))
        width = 0.8 / max(len(policies), 1)
        x = np.arange(len(datasets))
        for k, pol in enumerate(policies):
            rows = sub[sub["policy"] == pol].set_index("dataset")
            vals = np.array([rows["winrate"].get(d, np.nan) for d in datasets], dtype=float)
            errs = np.array([rows["ci_sem"].get(d, np.nan) for d in datasets], dtype=float)
            ns = [int(rows["n"].get(d, 0)) for d in datasets]
            pos = x - 0.4 + width * (k + 0.5)
            ax.bar(pos, np.nan_to_num(vals), width, yerr=np.nan_to_num(errs), capsize=3, label=pol)
            for xi, v, n in zip(pos, vals, ns):
                ax.text(xi, 2, f"{n}", ha="center", va="bottom", fontsize=7, color="white" if n else "black")
        ax.axhline(50, color="grey", lw=1, ls="--")
        ax.set_xticks(x, datasets)
        ax.set_ylim(0, 115)
        ax.set_title(f"{proto} protocol (numbers: n)")
        ax.legend(fontsize=7, loc="upper right")
    axes[0][0].set_ylabel("win rate vs reference (%)")
    fig.suptitle(title or "Win rate by source dataset")
    fig.tight_layout()
    return fig


def plot_length_analysis(lengths, buckets, *, title: str | None = None):
    """Left: mean output length (words) per generator. Right: win rate within buckets of the
    policy/reference length ratio, one line per policy × protocol (n printed at each point).

    ``lengths``: :func:`sflib.evaluation.mean_lengths`; ``buckets``: :func:`sflib.evaluation.length_analysis`.
    """
    import numpy as np

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 1.6]})
    a1.bar(lengths["generator"], lengths["mean_words"], color="tab:gray")
    for i, (m, n) in enumerate(zip(lengths["mean_words"], lengths["n"])):
        a1.text(i, m, f"{m:.0f}\n(n={n})", ha="center", va="bottom", fontsize=8)
    a1.set_ylabel("mean output length (words)")
    a1.set_ylim(0, float(np.nanmax(lengths["mean_words"])) * 1.3 if len(lengths) else 1)
    a1.tick_params(axis="x", labelrotation=15)
    a1.set_title("Output length")
    labels = list(dict.fromkeys(buckets["bucket"]))
    x = np.arange(len(labels))
    for (pol, proto), g in buckets.groupby(["policy", "protocol"], sort=False):
        g = g.set_index("bucket").reindex(labels)
        if g["n"].fillna(0).sum() == 0:
            continue
        a2.errorbar(x, g["winrate"], yerr=g["ci_sem"].fillna(0), marker="o", capsize=3, label=f"{pol} · {proto}")
        for xi, v, n in zip(x, g["winrate"], g["n"].fillna(0).astype(int)):
            if n:
                a2.annotate(f"{n}", (xi, v), textcoords="offset points", xytext=(4, 4), fontsize=7)
    a2.axhline(50, color="grey", lw=1, ls="--")
    a2.set_xticks(x, labels)
    a2.set_xlabel("policy output length / reference output length (words)")
    a2.set_ylabel("win rate (%)")
    a2.set_ylim(-5, 110)
    a2.set_title("Win rate within length-ratio buckets")
    a2.legend(fontsize=7)
    fig.suptitle(title or "Judges favour longer outputs: win rate by relative length")
    fig.tight_layout()
    return fig


__all__ += ["plot_winrates", "plot_winrates_by_dataset", "plot_length_analysis"]
