"""Where figures go: inline in a notebook (any IPython kernel, papermill included) and on disk.

Outside a kernel matplotlib draws with Agg (no window). Under a kernel the inline backend is
kept, and :func:`save_figure` shows the figure itself (PNG via ``IPython.display``), saves it as
PNG and vector PDF, and closes it so it is not drawn twice. Each save leaves a marker in the
output's metadata (``{"sflib": {"figure": name, "shown": bool}}``) so a test can check that every
saved figure is also visible (``tests/nbcheck.py``).
"""
from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import matplotlib

INLINE = "module://matplotlib_inline.backend_inline"


def in_kernel() -> bool:
    """True inside a running IPython kernel (Jupyter, papermill, nbclient), False elsewhere."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def configure_backend() -> str:
    """Agg outside a kernel; inside one, the inline backend (switched back to it if Agg was forced)."""
    backend = str(matplotlib.get_backend()).lower()
    if not in_kernel():
        if backend != "agg":
            matplotlib.use("Agg", force=True)
    elif backend == "agg":
        try:
            matplotlib.use(INLINE, force=True)
        except (ImportError, ValueError):  # no matplotlib-inline: save_figure still shows each figure
            pass
    return str(matplotlib.get_backend())


class SavedFigure(list):
    """The saved paths (PNG, PDF). Shows nothing when it is the last value of a notebook cell."""

    def _ipython_display_(self):  # IPython hook
        return None


def _show(png: bytes, name: str, width_px: int | None) -> None:
    from IPython.display import display

    md = {"sflib": {"figure": name, "shown": True}}
    if width_px:
        md["image/png"] = {"width": width_px}
    display({"image/png": base64.b64encode(png).decode("ascii"), "text/plain": f"[figure: {name}]"},
            raw=True, metadata=md)


def _mark(name: str) -> None:
    """An output with no visible content that records a save without an inline image."""
    from IPython.display import display

    display({"text/plain": ""}, raw=True, metadata={"sflib": {"figure": name, "shown": False}})


def save_figure(fig, name: str, folder: os.PathLike | str | None = None, *, show: bool | None = None,
                dpi: int = 200) -> SavedFigure:
    """Save ``fig`` as ``<folder>/<name>.png`` and ``.pdf`` (folder: ``figures/``, see :mod:`sflib.core.paths`).

    In a kernel (``show=None``) the figure is displayed inline once and closed; ``show=False``
    saves without displaying (recorded as not shown). Returns the two paths quietly. ``fig=None`` (a
    plot function that had nothing to draw, and said why) saves nothing and returns no paths.
    """
    import io

    if fig is None:
        return SavedFigure()

    from ..core.paths import figures_dir

    if not name or any(c in name for c in "/\\"):
        raise ValueError(f"figure name must be a plain file stem, not {name!r}")
    out = Path(folder) if folder is not None else figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    png = buf.getvalue()
    paths = SavedFigure()
    for ext in ("png", "pdf"):
        p = out / f"{name}.{ext}"
        tmp = p.with_name(f".{p.name}.tmp")
        if ext == "png":
            tmp.write_bytes(png)
        else:
            fig.savefig(tmp, format="pdf", bbox_inches="tight")
        os.replace(tmp, p)
        paths.append(p)
    kernel = in_kernel()
    if show is None:
        show = kernel
    if kernel:
        if show:
            width_in = fig.get_size_inches()[0]
            _show(png, name, int(width_in * 110))
        else:
            _mark(name)
        import matplotlib.pyplot as plt

        plt.close(fig)
    return paths


def study_figures_dir(study, folder: os.PathLike | str | None = None) -> Path:
    """Where a study's figures go: ``folder`` when given; the paper study's in the project's ``figures/``
    (``SFLIB_FIGURES``; the README and ``docs/figures/`` show them); any other study's in its own study
    folder (``<study folder>/figures``), so two studies never overwrite each other's figures."""
    from ..core.paths import figures_dir

    if folder is not None:
        return Path(folder)
    if getattr(study, "name", None) == "paper":
        return figures_dir()
    return Path(study.folder) / "figures"


__all__ = ["in_kernel", "configure_backend", "save_figure", "SavedFigure", "study_figures_dir"]
