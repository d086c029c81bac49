"""Stage 00 (the data) and 01 (generated responses): counts and lengths."""
from __future__ import annotations

import numpy as np

from ..core.stats import word_counts
from .style import figure, styled


@styled
def plot_source_counts(counts, title="Instructions per source dataset"):
    """Bar chart of a ``source x table`` count frame (``sflib.study.inventory.source_counts``)."""
    fig, ax = figure("full", 2.6)
    counts.plot.bar(ax=ax, width=0.8)
    ax.set_ylim(0, float(counts.to_numpy().max() or 1) * 1.3)  # room for the legend above the tallest bar
    ax.set_xlabel("source dataset")
    ax.set_ylabel("instructions")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=0)
    ax.legend(title=None, ncols=min(4, max(1, counts.shape[1])))
    return fig


@styled
def plot_length_distributions(lengths, kind, clip_quantile=0.99, title=None):
    """Histograms (one step line per collection) of word counts for one ``kind`` of text."""
    import seaborn as sns

    sub = lengths[lengths["kind"] == kind]
    clip = float(sub["words"].quantile(clip_quantile)) if len(sub) else 0
    fig, ax = figure("full", 2.6)
    sns.histplot(data=sub.assign(words=sub["words"].clip(upper=clip)), x="words", hue="collection",
                 element="step", stat="density", common_norm=False, bins=40, ax=ax)
    ax.set_xlabel(f"{kind} length (words; clipped at the {int(clip_quantile * 100)}th percentile, {clip:.0f})")
    ax.set_title(title or f"{kind.capitalize()} length distributions")
    return fig


@styled
def plot_response_lengths(responses, *, title: str | None = None, max_new_tokens: int | None = None):
    """Response length (words): a histogram by finish reason (left), and how much the samples of one
    instruction differ in length (right: the distribution over instructions of each one's longest minus
    shortest sample). Both are distributions, so the figure reads the same at 20 or 5,000 instructions.

    ``max_new_tokens``: when given, the title says how many samples stopped at that limit
    (finish reason ``length``), since cut responses make length comparisons meaningless.
    """
    df = responses.assign(words=word_counts(responses["response"]).to_numpy())
    fig, (ax1, ax2) = figure("full", 2.6, 1, 2)
    reasons = df["finish_reason"].fillna("unknown") if "finish_reason" in df else None
    groups = list(df.groupby(reasons)) if reasons is not None else [("", df)]
    bins = max(5, min(40, int(df["words"].max() or 1)))
    ax1.hist([g["words"] for _, g in groups], bins=bins, stacked=True,
             label=[f"{name} ({len(g)})" for name, g in groups])
    ax1.set_xlabel("response length (words)")
    ax1.set_ylabel("responses")
    ax1.set_title(f"All {len(df)} responses")
    if reasons is not None:
        ax1.legend(title="finish reason")
    per = df.groupby("instruction_id")["words"].agg(["min", "max", "size"])
    per = per[per["size"] > 1]
    spread = (per["max"] - per["min"]).to_numpy()
    if len(spread):
        ax2.hist(spread, bins=max(5, min(40, len(np.unique(spread)))), color="grey")
        ax2.axvline(float(np.median(spread)), color="black", ls="--", lw=1, label=f"median {np.median(spread):.0f}")
        ax2.legend()
    ax2.set_xlabel("longest − shortest sample of an instruction (words)")
    ax2.set_ylabel("instructions")
    ax2.set_title(f"Length spread within an instruction ({len(spread)} with ≥ 2 samples)")
    cut = ""
    if reasons is not None and max_new_tokens:
        k = int((reasons == "length").sum())
        cut = f"; {k} of {len(df)} stopped at the {max_new_tokens}-token limit"
    fig.suptitle(title or f"Lengths of {len(df)} sampled responses ({df['instruction_id'].nunique()} instructions{cut})")
    return fig


__all__ = ["plot_source_counts", "plot_length_distributions", "plot_response_lengths"]
