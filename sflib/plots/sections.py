"""Show one section of a stage's findings in a notebook: its tables, then its figures (saved and shown
once through :func:`sflib.plots.figures.save_figure`), so a notebook cell is one call.

A name the findings do not have is skipped: the findings' notes say why it is missing (a figure
that would repeat another, a table with no rows), so the cell needs no branch.
"""
from __future__ import annotations

import os


def show(findings, *names: str, figures_dir: os.PathLike | str | None = None) -> None:
    """Display ``findings.tables[name]`` and save + show ``findings.figures[name]`` for each name, in order."""
    from IPython.display import Markdown, display

    from .figures import save_figure

    for name in names:
        table = findings.tables.get(name)
        if isinstance(table, str):
            display(Markdown(table))
        elif table is not None:
            display(table)
        fig = findings.figures.get(name)
        if fig is not None:
            save_figure(fig, name, figures_dir)


__all__ = ["show"]
