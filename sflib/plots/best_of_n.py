"""Stage 06 (best-of-n): reward vs m, agreement of the two reward models, length of the selections."""
from __future__ import annotations

from .style import GREY, figure, styled


@styled
def plot_best_of_m(curves, *, title: str | None = None):
    """Reward vs m (one panel per reward model): the fixed-seed selections (± SEM) and the exact
    expectation over all m-subsets. ``curves``: ``{name: sflib.bon.best_of_m_curve frame}``."""
    k = max(len(curves), 1)
    fig, axes = figure("full" if k > 1 else "column", 2.4, 1, k, squeeze=False)
    for ax, (name, c) in zip(axes[0], curves.items()):
        ax.errorbar(c["m"], c["selected"], yerr=c["selected_sem"], marker="o", label="selected (fixed subsets)")
        ax.plot(c["m"], c["expected"], "--", marker=".", color=GREY, label="expected over all subsets")
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(c["m"]), [str(m) for m in c["m"]])
        ax.set_xlabel("m (samples per instruction)")
        ax.set_ylabel(f"{name} reward of the best of m")
        ax.set_title(name)
        ax.legend()
    fig.suptitle(title or "Reward of the best-of-m selection vs m")
    return fig


@styled
def plot_rm_agreement(table, *, names: tuple[str, str] = ("ratings RM", "rankings RM"), title: str | None = None):
    """Share of instructions where two reward models pick the same sample, vs m, with chance (1/m)."""
    fig, ax = figure("column", 2.4)
    ncol = next((c for c in ("n_instructions", "n") if c in table), None)
    n = int(table[ncol].max()) if ncol else None
    ax.plot(table["m"], table["same_sample"] * 100, marker="o", label="same sample picked")
    ax.plot(table["m"], table["chance"] * 100, "--", color=GREY, label="chance (1/m)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(table["m"]), [str(m) for m in table["m"]])
    ax.set_ylim(0, 105)
    ax.set_xlabel("m (samples per instruction)")
    ax.set_ylabel("agreement (% of instructions)")
    ax.set_title(title or (f"{names[0]} and {names[1]} pick the same sample" + (f" (n={n} instructions)" if n else "")))
    ax.legend()
    return fig


@styled
def plot_length_bias(lengths, *, truncated_share: float | None = None, title: str | None = None):
    """Mean length (words, ± SEM) of the selected outputs vs m for each selector, against all samples.
    ``lengths``: :func:`sflib.bon.length_by_m`. ``truncated_share`` (0–1): the share of
    samples cut at the token limit, printed on the figure (lengths of cut samples say little)."""
    fig, ax = figure("column", 2.4)
    for name, g in lengths.groupby("selector", sort=False):
        if name == "all samples":
            ax.plot(g["m"], g["mean_words"], "--", color=GREY, label="all samples")
        else:
            ax.errorbar(g["m"], g["mean_words"], yerr=g["sem_words"], marker="o", label=name)
    ms = sorted(lengths["m"].unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(ms, [str(m) for m in ms])
    ax.set_xlabel("m (samples per instruction)")
    ax.set_ylabel("mean length of the output (words)")
    ax.set_title(title or "Length of the best-of-m output vs all samples")
    if truncated_share is not None:
        ax.annotate(f"{100 * truncated_share:.0f}% of samples cut at the token limit", xy=(0.02, 0.02),
                    xycoords="axes fraction", fontsize=6.5, color=GREY)
    ax.legend()
    return fig


__all__ = ["plot_best_of_m", "plot_rm_agreement", "plot_length_bias"]
