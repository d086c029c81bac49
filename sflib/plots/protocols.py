"""Figures of notebook 09: the cross-protocol agreement and each protocol's cost and agreement per dollar.
Plots only draw what :mod:`sflib.protocols.compare` computed."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd


def agreement_heatmap(agreement: pd.DataFrame, protocols: list[str], value: str = "agreement"):
    """A protocols × protocols heat map of ``agreement`` (or ``kappa``) with n in each cell; None if empty."""
    import matplotlib.pyplot as plt

    if agreement is None or not len(agreement):
        print("no pair of protocols to compare: nothing to draw")
        return None
    k = len(protocols)
    grid = np.full((k, k), np.nan)
    ns = np.zeros((k, k), dtype=int)
    idx = {p: i for i, p in enumerate(protocols)}
    for r in agreement.itertuples():
        i, j = idx[r.protocol_x], idx[r.protocol_y]
        grid[i, j] = grid[j, i] = getattr(r, value)
        ns[i, j] = ns[j, i] = r.n_pairs
    fig, ax = plt.subplots(figsize=(1.4 * k + 2, 1.2 * k + 1.5))
    im = ax.imshow(grid, vmin=-1 if value == "kappa" else 0, vmax=1, cmap="viridis")
    ax.set_xticks(range(k), protocols, rotation=30, ha="right")
    ax.set_yticks(range(k), protocols)
    for i in range(k):
        for j in range(k):
            if i != j:
                text = "–" if math.isnan(grid[i, j]) else f"{grid[i, j]:.2f}\nn={ns[i, j]}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if not math.isnan(grid[i, j]) and grid[i, j] < 0.5 else "black")
    fig.colorbar(im, ax=ax, label="share of common pairs that agree" if value == "agreement" else "Cohen's κ")
    ax.set_title("Agreement between protocols on the pairs both imply" if value == "agreement"
                 else "Cohen's κ between protocols")
    fig.tight_layout()
    return fig


def matrix_grid(matrices: dict):
    """The 3×3 agreement matrix of every protocol pair, side by side; None if there is none."""
    import matplotlib.pyplot as plt

    if not matrices:
        print("no pair of protocols to compare: nothing to draw")
        return None
    n = len(matrices)
    cols = min(3, n)
    rows = int(math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.1 * rows), squeeze=False)
    for ax, ((x, y), m) in zip(axes.flat, matrices.items()):
        ax.imshow(m.values, cmap="Blues")
        for i in range(3):
            for j in range(3):
                ax.text(j, i, int(m.values[i, j]), ha="center", va="center", fontsize=9)
        ax.set_xticks(range(3), m.columns)
        ax.set_yticks(range(3), m.index)
        ax.set_xlabel(y, fontsize=8)
        ax.set_ylabel(x, fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("Decisions of protocol X (rows) vs Y (columns) on their common pairs")
    fig.tight_layout()
    return fig


def cost_panel(protocols: pd.DataFrame):
    """Left: judge calls per protocol; right: agreement with the reference protocol per dollar (where priced)."""
    import matplotlib.pyplot as plt

    if protocols is None or not len(protocols):
        print("no protocol collected: nothing to draw")
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
    a1.bar(protocols["protocol"], protocols["calls"], color="tab:blue")
    a1.set_ylabel("judge calls")
    a1.set_title("Calls per protocol")
    per = protocols["agreement_per_dollar"]
    if per.notna().any():
        a2.bar(protocols["protocol"], per.fillna(0), color="tab:green")
        a2.set_ylabel("agreement with pairwise-3way per $")
        a2.set_title("Agreement with the pairwise protocol per dollar")
    else:
        a2.text(0.5, 0.5, "no dollar cost (local, recorded or unpriced judge)", ha="center", va="center",
                transform=a2.transAxes)
        a2.set_axis_off()
    for ax in (a1, a2):
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig
