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


# ----------------------------------------------------------------------------- consistency (stage 5)

_DECISION_TICKS = ["a (response1)", "b (response2)", "equal"]


def plot_consistency_matrices(report, *, title: str | None = None):
    """Heatmaps of a :class:`sflib.consistency.ConsistencyReport`'s 3x3 agreement matrix: counts
    (left) and row-normalised (right: of the pairs the ratings call X, the share the rankings call
    Y). The outlined diagonal is agreement."""
    import numpy as np
    import seaborn as sns
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.4))
    panels = [(report.matrix, "d", "Blues", "counts"),
              (report.matrix_normalised.fillna(0), ".0%", "Purples", "row-normalised (share of each ratings row)")]
    for ax, (m, fmt, cmap, name) in zip(axes, panels):
        sns.heatmap(np.asarray(m, dtype=float) if fmt != "d" else np.asarray(m), annot=True, fmt=fmt, cmap=cmap,
                    cbar=False, ax=ax, square=True, linewidths=0.5, linecolor="white",
                    vmin=0, vmax=1 if fmt != "d" else None, annot_kws={"fontsize": 11},
                    xticklabels=_DECISION_TICKS, yticklabels=_DECISION_TICKS)
        for i in range(3):
            ax.add_patch(Rectangle((i, i), 1, 1, fill=False, edgecolor="darkorange", lw=2.5))
        ax.set_xlabel("rankings decision")
        ax.set_ylabel("ratings say (higher score wins)")
        ax.set_title(name, fontsize=10)
        ax.tick_params(axis="y", labelrotation=0)
    lo, hi = report.ci.get("consistency", (np.nan, np.nan))
    ci = f", 95% CI {100 * lo:.0f}–{100 * hi:.0f}%" if not np.isnan(lo) else ""
    fig.suptitle(title or (f"Ratings vs rankings agree on {100 * report.consistency:.0f}% of {report.n_compared} "
                           f"pairs{ci} (outlined diagonal); kappa {report.kappa:.2f}"))
    fig.tight_layout()
    return fig


def plot_consistency_by_gap(by_gap, *, overall: float | None = None, title: str | None = None):
    """Consistency by rating gap |score1 − score2| (left, bars with 95% bootstrap CIs and n) and what
    the disagreements are (right: opposite preferences vs one side saying equal)."""
    import numpy as np

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11.5, 4), gridspec_kw={"width_ratios": [1.1, 1]})
    x = np.arange(len(by_gap))
    labels = [str(g) for g in by_gap["gap"]]
    cons = 100 * by_gap["consistency"].to_numpy()
    err = np.vstack([cons - 100 * by_gap["ci_low"].to_numpy(), 100 * by_gap["ci_high"].to_numpy() - cons])
    a1.bar(x, cons, color="tab:blue", alpha=0.8)
    a1.errorbar(x, cons, yerr=np.nan_to_num(err), fmt="none", ecolor="black", capsize=4, lw=1)
    for xi, n in zip(x, by_gap["n"]):
        a1.text(xi, 2, f"n={n}", ha="center", va="bottom", fontsize=8, color="white")
    if overall is not None:
        a1.axhline(100 * overall, color="darkorange", ls="--", lw=1.5, label=f"overall {100 * overall:.0f}%")
        a1.legend(loc="upper left", fontsize=8)
    a1.set_xticks(x, labels)
    a1.set_xlabel("rating gap |score1 − score2|  (0 = ratings tie)")
    a1.set_ylabel("consistency (%)")
    a1.set_ylim(0, 105)
    a1.set_title("Agreement by rating gap", fontsize=10)
    parts = [("agree", 100 * by_gap["consistency"], "tab:green"),
             ("one side says equal", 100 * by_gap["one_side_equal"], "tab:gray"),
             ("opposite preference", 100 * by_gap["opposite"], "tab:red")]
    bottom = np.zeros(len(by_gap))
    for name, v, color in parts:
        a2.bar(x, v, bottom=bottom, label=name, color=color, alpha=0.8)
        bottom += v.to_numpy()
    a2.set_xticks(x, labels)
    a2.set_xlabel("rating gap |score1 − score2|")
    a2.set_ylabel("share of pairs (%)")
    a2.set_ylim(0, 100)
    a2.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    a2.set_title("What the pairs are", fontsize=10)
    fig.suptitle(title or "Consistency by rating gap")
    fig.tight_layout()
    return fig


def plot_consistency_by_group(table, *, label: str | None = None, title: str | None = None,
                              reference: float | None = None, reference_label: str = "reference"):
    """Horizontal bars of consistency with 95% CIs per group — a ``by_source`` table (label column
    ``source``) or :func:`sflib.consistency.compare_annotators`' table (annotators in the index).
    ``reference`` draws a dashed line at that consistency (e.g. 0.4: the paper's ~60% disagreement)."""
    import numpy as np

    label = label or table.index.name or "source"
    t = table.reset_index() if label not in table.columns and table.index.name == label else table
    n = t["n"] if "n" in t else t["n_compared"]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(t) + 1.6))
    y = np.arange(len(t))
    cons = 100 * t["consistency"].to_numpy()
    err = np.vstack([cons - 100 * t["ci_low"].to_numpy(), 100 * t["ci_high"].to_numpy() - cons])
    ax.barh(y, cons, color="tab:blue", alpha=0.8)
    ax.errorbar(cons, y, xerr=np.nan_to_num(err), fmt="none", ecolor="black", capsize=4, lw=1)
    for yi, c, k, top in zip(y, cons, n, np.nan_to_num(100 * t["ci_high"].to_numpy(), nan=0.0)):
        ax.text(max(c, top) + 1.5, yi, f"{c:.0f}%  (n={k})", va="center", fontsize=8)
    if reference is not None:
        ax.axvline(100 * reference, color="darkorange", ls="--", lw=1.5, label=reference_label)
        ax.legend(fontsize=8, loc="lower right")
    ax.set_yticks(y, [str(v) for v in t[label]])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("consistency: ratings and rankings agree (%)")
    ax.set_title(title or f"Consistency by {label}")
    fig.tight_layout()
    return fig


__all__ += ["plot_consistency_matrices", "plot_consistency_by_gap", "plot_consistency_by_group"]


# ----------------------------------------------------------------------------- reward models (stage 6)

def plot_rm_loss_curves(histories: dict, *, title: str | None = None):
    """Train (line) and held-out (markers) loss per step for each reward model.

    ``histories`` maps a name to ``trainer.state.log_history`` or to
    :func:`sflib.reward_model.loss_history`'s frame (``step, split, loss``). The two RMs have
    different losses (squared error vs Bradley–Terry), so each gets its own panel.
    """
    import pandas as pd

    from .reward_model import loss_history

    fig, axes = plt.subplots(1, len(histories), figsize=(5 * len(histories), 3.6), squeeze=False)
    for ax, (name, hist) in zip(axes[0], histories.items()):
        df = hist if isinstance(hist, pd.DataFrame) else loss_history(hist)
        tr, ev = df[df["split"] == "train"], df[df["split"] == "eval"]
        ax.plot(tr["step"], tr["loss"], "-", color="tab:blue", label="train")
        if len(ev):
            ax.plot(ev["step"], ev["loss"], "o--", color="tab:orange", label="held-out")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("MSE on sigmoid(reward)" if "rating" in name else "Bradley–Terry loss")
        ax.set_title(f"{name} RM")
        ax.legend(fontsize=8)
    fig.suptitle(title or "Reward-model loss curves")
    fig.tight_layout()
    return fig


def plot_rewards_by_score(scored, *, reward_columns: list[str] | None = None, title: str | None = None):
    """Reward distribution per rating score (1–7), one panel per reward model.

    ``scored`` has a ``score`` column and one reward column per model (default: every column whose
    name ends with ``_reward``); a held-out ``split`` column, when present, colours the points.
    """
    import seaborn as sns

    cols = reward_columns or [c for c in scored.columns if str(c).endswith("_reward")]
    fig, axes = plt.subplots(1, len(cols), figsize=(5 * len(cols), 3.8), squeeze=False)
    order = sorted(scored["score"].dropna().unique())
    for ax, col in zip(axes[0], cols):
        sns.boxplot(data=scored, x="score", y=col, order=order, color="lightgray", fliersize=0, ax=ax)
        hue = "split" if "split" in scored.columns else None
        sns.stripplot(data=scored, x="score", y=col, order=order, hue=hue, size=4, alpha=0.8, ax=ax,
                      dodge=False, jitter=0.2)
        ax.set_xlabel("rating score (1–7)")
        ax.set_ylabel("reward")
        ax.set_title(col.replace("_reward", " RM"))
        if hue:
            ax.legend(fontsize=8, title=None)
    fig.suptitle(title or "Rewards per rating score")
    fig.tight_layout()
    return fig


__all__ += ["plot_rm_loss_curves", "plot_rewards_by_score"]


# ----------------------------------------------------------------------------- generation (2) and best-of-n (7)

def plot_response_lengths(responses, *, title: str | None = None):
    """Response length (words): a histogram by finish reason, and each instruction's k samples."""
    words = responses["response"].fillna("").astype(str).str.split().str.len()
    df = responses.assign(words=words)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 1.3]})
    groups = df.groupby(df["finish_reason"].fillna("unknown") if "finish_reason" in df else [""] * len(df))
    bins = max(5, min(30, int(df["words"].max() or 1)))
    ax1.hist([g["words"] for _, g in groups], bins=bins, stacked=True,
             label=[f"{name} ({len(g)})" for name, g in groups])
    ax1.set_xlabel("response length (words)")
    ax1.set_ylabel("responses")
    if "finish_reason" in df:
        ax1.legend(title="finish reason", fontsize=8)
    order = list(dict.fromkeys(df["instruction_id"]))
    pos = df["instruction_id"].map({iid: i for i, iid in enumerate(order)})
    ax2.scatter(df["words"], pos, s=18, alpha=0.7)
    means = df.groupby("instruction_id")["words"].mean().reindex(order)
    ax2.scatter(means, range(len(order)), marker="|", s=300, color="black", label="mean")
    labels = df.drop_duplicates("instruction_id").set_index("instruction_id")["instruction"].reindex(order)
    ax2.set_yticks(range(len(order)), [t[:40] + ("…" if len(t) > 40 else "") for t in labels], fontsize=7)
    ax2.invert_yaxis()
    ax2.set_xlabel("response length (words)")
    ax2.legend(fontsize=8)
    fig.suptitle(title or f"Lengths of {len(df)} sampled responses ({len(order)} instructions)")
    fig.tight_layout()
    return fig


def plot_best_of_m(curves, *, title: str | None = None):
    """Reward vs m (one panel per reward model): the fixed-seed selections (± SEM) and the exact
    expectation over all m-subsets. ``curves``: ``{name: sflib.best_of_n.best_of_m_curve frame}``."""
    fig, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 3.6), squeeze=False)
    for ax, (name, c) in zip(axes[0], curves.items()):
        ax.errorbar(c["m"], c["selected"], yerr=c["selected_sem"], marker="o", capsize=3, label="selected (fixed subsets)")
        ax.plot(c["m"], c["expected"], "--", marker=".", color="gray", label="expected over all subsets")
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(c["m"]), [str(m) for m in c["m"]])
        ax.set_xlabel("m (samples per instruction)")
        ax.set_ylabel(f"{name} reward of the best of m")
        ax.set_title(name)
        ax.legend(fontsize=8)
    fig.suptitle(title or "Best-of-m: reward of the selected response grows with m")
    fig.tight_layout()
    return fig


def plot_rm_agreement(table, *, names: tuple[str, str] = ("ratings RM", "rankings RM"), title: str | None = None):
    """Share of instructions where two reward models pick the same sample, vs m, with chance (1/m)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(table["m"], table["same_sample"] * 100, marker="o", label="same sample picked")
    ax.plot(table["m"], table["chance"] * 100, "--", color="gray", label="chance (1/m)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(table["m"]), [str(m) for m in table["m"]])
    ax.set_ylim(0, 105)
    ax.set_xlabel("m (samples per instruction)")
    ax.set_ylabel("agreement (% of instructions)")
    ax.set_title(title or f"How often the {names[0]} and the {names[1]} pick the same response")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_length_bias(lengths, *, title: str | None = None):
    """Mean length (words, ± SEM) of the selected outputs vs m for each selector, against all samples.
    ``lengths``: :func:`sflib.best_of_n.length_by_m`."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, g in lengths.groupby("selector", sort=False):
        if name == "all samples":
            ax.plot(g["m"], g["mean_words"], "--", color="gray", label="all samples")
        else:
            ax.errorbar(g["m"], g["mean_words"], yerr=g["sem_words"], marker="o", capsize=3, label=name)
    ms = sorted(lengths["m"].unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(ms, [str(m) for m in ms])
    ax.set_xlabel("m (samples per instruction)")
    ax.set_ylabel("mean length of the output (words)")
    ax.set_title(title or "Length of the best-of-m output vs all samples")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


__all__ += ["plot_response_lengths", "plot_best_of_m", "plot_rm_agreement", "plot_length_bias"]
