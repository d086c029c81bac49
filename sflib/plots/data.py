"""Stage 00 (the data) and 01 (generated responses): counts and lengths."""
from __future__ import annotations

from .style import figure, styled


@styled
def plot_source_counts(counts, title="Instructions per source dataset"):
    """Bar chart of a ``source x table`` count frame (``sflib.core.inventory.source_counts``)."""
    fig, ax = figure("full", 2.6)
    counts.plot.bar(ax=ax, width=0.8)
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


#: instructions drawn one per row in :func:`plot_response_lengths` (its cost must not grow with the study)
MAX_INSTRUCTIONS_SHOWN = 40


@styled
def plot_response_lengths(responses, *, title: str | None = None, max_new_tokens: int | None = None):
    """Response length (words): a histogram by finish reason, and each instruction's k samples.

    ``max_new_tokens``: when given, the title says how many samples stopped at that limit
    (finish reason ``length``), since cut responses make length comparisons meaningless.
    """
    words = responses["response"].fillna("").astype(str).str.split().str.len()
    df = responses.assign(words=words)
    fig, (ax1, ax2) = figure("full", 2.8, 1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    reasons = df["finish_reason"].fillna("unknown") if "finish_reason" in df else None
    groups = list(df.groupby(reasons)) if reasons is not None else [("", df)]
    bins = max(5, min(30, int(df["words"].max() or 1)))
    ax1.hist([g["words"] for _, g in groups], bins=bins, stacked=True,
             label=[f"{name} ({len(g)})" for name, g in groups])
    ax1.set_xlabel("response length (words)")
    ax1.set_ylabel("responses")
    if reasons is not None:
        ax1.legend(title="finish reason")
    every = list(dict.fromkeys(df["instruction_id"]))
    order = every[:MAX_INSTRUCTIONS_SHOWN]  # one row per instruction: a bounded number of them, readable
    shown = df[df["instruction_id"].isin(set(order))]
    pos = shown["instruction_id"].map({iid: i for i, iid in enumerate(order)})
    ax2.scatter(shown["words"], pos, s=10, alpha=0.7)
    if len(every) > len(order):
        ax2.set_title(f"the first {len(order)} of {len(every)} instructions", fontsize=8)
    means = shown.groupby("instruction_id")["words"].mean().reindex(order)
    ax2.scatter(means, range(len(order)), marker="|", s=200, color="black", label="mean")
    labels = shown.drop_duplicates("instruction_id").set_index("instruction_id")["instruction"].reindex(order)
    ax2.set_yticks(range(len(order)), [str(t)[:32] + ("…" if len(str(t)) > 32 else "") for t in labels], fontsize=6)
    ax2.invert_yaxis()
    ax2.set_xlabel("response length (words)")
    ax2.legend()
    cut = ""
    if reasons is not None and max_new_tokens:
        k = int((reasons == "length").sum())
        cut = f"; {k} of {len(df)} stopped at the {max_new_tokens}-token limit"
    fig.suptitle(title or f"Lengths of {len(df)} sampled responses ({len(every)} instructions{cut})")
    return fig


__all__ = ["plot_source_counts", "plot_length_distributions", "plot_response_lengths"]
