"""One figure style for the whole project: sizes for a two-column paper, the Okabe–Ito
colour-blind-safe palette, small serif-free fonts, constrained layout (no overlapping labels) and
fonts embedded as text in the vector PDFs.

Every plot function in :mod:`sflib.plots` is wrapped in :func:`styled`, so the style holds whatever
the caller's global ``rcParams`` are; :func:`figure` makes a figure of a paper width.
"""
from __future__ import annotations

import functools

import matplotlib

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision deficiency.
OKABE_ITO = {
    "blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00",
    "sky": "#56B4E9", "purple": "#CC79A7", "yellow": "#F0E442", "black": "#000000",
}
PALETTE = [OKABE_ITO[k] for k in ("blue", "orange", "green", "vermillion", "sky", "purple", "yellow", "black")]
GREY = "#8C8C8C"

# What each colour means wherever it appears.
AGREE, OPPOSITE, EQUAL, CHANCE = OKABE_ITO["green"], OKABE_ITO["vermillion"], GREY, "#4D4D4D"
PAPER, OURS = OKABE_ITO["orange"], OKABE_ITO["blue"]

# Widths of a two-column paper (ACL / NeurIPS style, inches).
COLUMN = 3.3
FULL = 6.9
HEIGHT = 2.4

RC = {
    "figure.figsize": (COLUMN, HEIGHT),
    "figure.dpi": 110,
    "figure.constrained_layout.use": True,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,  # TrueType: text stays text in the PDF
    "ps.fonttype": 42,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 8,
    "axes.titlesize": 8.5,
    "axes.labelsize": 8,
    "figure.titlesize": 9,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "legend.frameon": False,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "lines.linewidth": 1.3,
    "lines.markersize": 4,
    "errorbar.capsize": 2.5,
    "hatch.linewidth": 0.6,
    "image.cmap": "cividis",
}


def apply() -> None:
    """Make the project style the global default (the notebooks' own matplotlib calls get it too).

    Constrained layout stays off globally: a cell's own ``fig.tight_layout()`` would warn that the
    layout changed. The plot functions and :func:`figure` use it."""
    matplotlib.rcParams.update({k: v for k, v in RC.items() if k != "figure.constrained_layout.use"})


def styled(func):
    """Decorator: run a plot function under the project style."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(RC):
            return func(*args, **kwargs)
    return wrapper


def figure(width: str | float = "full", height: float | None = None, nrows: int = 1, ncols: int = 1, **kwargs):
    """``plt.subplots`` at a paper width: ``"column"`` (one column), ``"full"`` (both), or inches."""
    import matplotlib.pyplot as plt

    w = {"column": COLUMN, "full": FULL}.get(width, width) if isinstance(width, str) else float(width)
    h = height if height is not None else HEIGHT
    kwargs.setdefault("layout", "constrained")
    with matplotlib.rc_context(RC):
        return plt.subplots(nrows, ncols, figsize=(w, h), **kwargs)


__all__ = ["OKABE_ITO", "PALETTE", "GREY", "AGREE", "OPPOSITE", "EQUAL", "CHANCE", "PAPER", "OURS",
           "COLUMN", "FULL", "HEIGHT", "RC", "apply", "styled", "figure"]
