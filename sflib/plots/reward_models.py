"""Stage 05 (reward models): loss curves, rewards per rating score, pairwise accuracy vs chance."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..core.stats import wilson
from .common import MIN_N, chance_line, interval_err, mark_small, nothing_to_draw, small_n_note
from .style import OKABE_ITO, PALETTE, figure, styled


@styled
def plot_rm_loss_curves(histories: dict, *, title: str | None = None):
    """Train (line) and held-out (markers) loss per step for each reward model.

    ``histories`` maps a name to ``trainer.state.log_history`` or to
    :func:`sflib.rm.loss_history`'s frame (``step, split, loss``). The two RMs have
    different losses (squared error vs Bradley–Terry), so each gets its own panel.
    """
    from ..rm import loss_history

    k = max(len(histories), 1)
    fig, axes = figure("full" if k > 1 else "column", 2.4, 1, k, squeeze=False)
    for ax, (name, hist) in zip(axes[0], histories.items()):
        df = hist if isinstance(hist, pd.DataFrame) else loss_history(hist)
        tr, ev = df[df["split"] == "train"], df[df["split"] == "eval"]
        ax.plot(tr["step"], tr["loss"], "-", color=OKABE_ITO["blue"], label="train")
        if len(ev):
            ax.plot(ev["step"], ev["loss"], "o--", color=OKABE_ITO["orange"], label="held-out")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("MSE on sigmoid(reward)" if "rating" in name else "Bradley–Terry loss")
        ax.set_title(f"{name} RM")
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


@styled
def plot_rewards_by_score(scored, *, reward_columns: list[str] | None = None, title: str | None = None):
    """Reward distribution per rating score (1–7), one panel per reward model.

    ``scored`` has a ``score`` column and one reward column per model (default: every column whose
    name ends with ``_reward``); a held-out ``split`` column, when present, colours the points.
    """
    cols = reward_columns or [c for c in scored.columns if str(c).endswith("_reward")]
    fig, axes = figure("full" if len(cols) > 1 else "column", 2.5, 1, max(len(cols), 1), squeeze=False)
    order = sorted(scored["score"].dropna().unique())
    pos = {s: i for i, s in enumerate(order)}
    hue = "split" if "split" in scored.columns else None
    groups = list(scored.groupby("split", sort=True)) if hue else [(None, scored)]
    rng = np.random.default_rng(0)
    for ax, col in zip(axes[0], cols):
        data = [scored.loc[scored["score"] == s, col].dropna().to_numpy(dtype=float) for s in order]
        ax.boxplot(data, positions=list(range(len(order))), widths=0.6, showfliers=False, patch_artist=True,
                   boxprops={"facecolor": "0.9", "edgecolor": "0.5", "linewidth": 0.7},
                   medianprops={"color": "0.2", "linewidth": 0.9}, whiskerprops={"color": "0.5", "linewidth": 0.7},
                   capprops={"color": "0.5", "linewidth": 0.7})
        for k, (name, g) in enumerate(groups):
            g = g.dropna(subset=["score", col])
            xs = g["score"].map(pos).to_numpy(dtype=float) + rng.uniform(-0.2, 0.2, len(g))
            ax.scatter(xs, g[col], s=6, alpha=0.8, color=PALETTE[k % len(PALETTE)],
                       label=str(name) if hue else None, zorder=3)
        ax.set_xticks(range(len(order)), [str(int(s)) if float(s).is_integer() else str(s) for s in order])
        ax.set_xlabel("rating score (1–7)")
        ax.set_ylabel("reward")
        ax.set_title(str(col).replace("_reward", " RM"))
        if hue:
            ax.legend(title=None)
    if title:
        fig.suptitle(title)
    return fig


def _accuracy_frame(acc) -> pd.DataFrame:
    if isinstance(acc, Mapping):
        rows = []
        for name, v in acc.items():
            v = dict(v) if isinstance(v, Mapping) else {"accuracy": v[0], "n": v[1]}
            rows.append({"reward_model": name, **v})
        acc = pd.DataFrame(rows)
    df = acc.reset_index() if "reward_model" not in acc.columns and acc.index.name else acc.copy()
    if "reward_model" not in df.columns:
        df = df.rename(columns={df.columns[0]: "reward_model"})
    if "accuracy" not in df.columns or "n" not in df.columns:
        raise ValueError(f"RM accuracy needs columns reward_model, accuracy (0-1), n; it has {list(df.columns)}")
    return df


@styled
def plot_rm_accuracy(acc, *, chance: float = 0.5, min_n: int = MIN_N, title: str | None = None):
    """Pairwise accuracy of each reward model on held-out pairs (share where the RM gives the
    preferred response the higher reward), with 95% Wilson intervals, n, and the chance line.

    ``acc``: a frame with ``reward_model``, ``accuracy`` (0–1) and ``n`` columns, or
    ``{name: {"accuracy": a, "n": n}}`` / ``{name: (a, n)}``. Models with n = 0 are dropped; fewer
    than ``min_n`` pairs: faint and hatched.
    """
    df = _accuracy_frame(acc)
    df = df[df["n"].fillna(0) > 0].reset_index(drop=True)
    if not len(df):
        return nothing_to_draw("no reward model has held-out pairs: nothing to draw")
    n = df["n"].astype(int)
    a = df["accuracy"].astype(float)
    ci = [wilson(round(x * k), k) for x, k in zip(a, n)]
    err = interval_err(a, [c[0] for c in ci], [c[1] for c in ci])
    fig, ax = figure("column", 2.4)
    x = np.arange(len(df))
    bars = ax.bar(x, a, color=OKABE_ITO["blue"], width=0.55)
    faint = mark_small(bars, n, min_n)
    ax.errorbar(x, a, yerr=err, fmt="none", ecolor="black", lw=0.8)
    for xi, v, k, top in zip(x, a, n, a + err[1]):
        ax.text(xi, top + 0.02, f"{v:.2f}\n(n={k})", ha="center", va="bottom", fontsize=6.5)
    chance_line(ax, chance, f"chance ({chance:g})")
    ax.set_xticks(x, [str(v) for v in df["reward_model"]])
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("pairwise accuracy")
    ax.legend(loc="upper right")
    ax.set_title(title or "Held-out pairwise accuracy (95% Wilson CI)")
    small_n_note(ax, faint, min_n)
    return fig


__all__ = ["plot_rm_loss_curves", "plot_rewards_by_score", "plot_rm_accuracy"]
