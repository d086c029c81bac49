"""Helpers every stage's plots share: small-n bars, chance lines, clipped error bars, n labels."""
from __future__ import annotations

import numpy as np

from .style import CHANCE, GREY

MIN_N = 10  # below this many items a bar is drawn faint and hatched and labelled "n=..."


def clipped_yerr(values, err, lo: float = 0.0, hi: float = 100.0) -> np.ndarray:
    """Asymmetric error bars for ``values ± err`` clipped to ``[lo, hi]`` (shape 2 x n, for ``yerr=``)."""
    v = np.asarray(values, dtype=float)
    e = np.nan_to_num(np.asarray(err, dtype=float))
    low = np.clip(v - e, lo, hi)
    high = np.clip(v + e, lo, hi)
    return np.nan_to_num(np.vstack([v - low, high - v]))


def interval_err(values, low, high) -> np.ndarray:
    """Asymmetric error bars from an interval ``[low, high]`` around ``values`` (NaN -> 0)."""
    v = np.asarray(values, dtype=float)
    return np.nan_to_num(np.vstack([v - np.asarray(low, dtype=float), np.asarray(high, dtype=float) - v]).clip(min=0))


def chance_line(ax, y: float, label: str = "chance", *, horizontal: bool = True):
    """A dashed reference line (chance, 50 %, 0.5, ...) labelled in the legend."""
    kw = dict(color=CHANCE, ls="--", lw=0.9, label=label, zorder=1)
    return ax.axhline(y, **kw) if horizontal else ax.axvline(y, **kw)


def mark_small(bars, ns, min_n: int = MIN_N) -> int:
    """Draw bars with ``0 < n < min_n`` faint and hatched. Returns how many were marked."""
    k = 0
    for bar, n in zip(bars, ns):
        if 0 < int(n) < min_n:
            bar.set_alpha(0.35)
            bar.set_hatch("////")
            bar.set_edgecolor(GREY)
            k += 1
    return k


def label_n(ax, xs, ys, ns, min_n: int = MIN_N, *, fmt: str = "n={n}", horizontal: bool = False, pad: float = 1.0):
    """Write ``n`` above each bar (at the end of a horizontal bar); small n gets "(few)"."""
    for x, y, n in zip(xs, ys, ns):
        n = int(n)
        text = fmt.format(n=n) + (" (few)" if 0 < n < min_n else "")
        y = 0.0 if y is None or not np.isfinite(y) else float(y)
        if horizontal:
            ax.text(y + pad, x, text, va="center", ha="left", fontsize=6.5)
        else:
            ax.text(x, y + pad, text, ha="center", va="bottom", fontsize=6.5)


def small_n_note(ax, count: int, min_n: int = MIN_N) -> None:
    """A caption under the axes when some bars are faint."""
    if count:
        ax.annotate(f"hatched, faint: fewer than {min_n} items", xy=(0, 0), xycoords="axes fraction",
                    xytext=(0, -26), textcoords="offset points", fontsize=6.5, color=GREY, va="top")


def drop_empty(df, n_col: str = "n"):
    """Rows whose ``n`` is 0 or missing removed (empty groups are not drawn)."""
    if n_col not in df:
        return df
    return df[df[n_col].fillna(0).astype(float) > 0]


def nothing_to_draw(message: str):
    """Say why a figure is not drawn (one plain line) and return ``None``."""
    print(message)
    return None


__all__ = ["MIN_N", "clipped_yerr", "interval_err", "chance_line", "mark_small", "label_n", "small_n_note",
           "drop_empty", "nothing_to_draw"]
