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
