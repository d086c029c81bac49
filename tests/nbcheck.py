"""Checks on executed notebooks: inline figures, saved figures, and noise in the outputs.

- :func:`inline_images` counts image outputs (PNG / SVG / JPEG) a reader sees;
- :func:`saved_figures` lists the names passed to ``sflib.plots.save_figure`` during execution
  (each save leaves ``{"sflib": {"figure": name, "shown": bool}}`` in its output's metadata), so a
  test can assert ``inline_images(nb) >= len(saved_figures(nb))`` and that every save was shown;
- :func:`noise` lists what a reader should not see: warnings, tracebacks, absolute paths of the
  machine, floats printed with six zeros, progress widgets, raw trainer log dicts, and "SPEC".
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat

IMAGE_MIMES = ("image/png", "image/svg+xml", "image/jpeg")
TEXT_MIMES = ("text/plain", "text/html", "text/markdown", "text/latex")

PATTERNS = {
    "warning": re.compile(r"\b[A-Z]\w*Warning\b:|\bwarnings\.warn\(|^\s*warn\(", re.M),
    "traceback": re.compile(r"Traceback \(most recent call last\)|^\s*File \"[^\"]+\", line \d+", re.M),
    "machine path": re.compile(r"(?<![\w.~-])/(?:root|tmp|work|home)(?:/|\b)"),
    "float spam": re.compile(r"(?<![\w.])-?\d+\.0{6}\b"),
    "SPEC": re.compile(r"\bSPEC\b"),
    "trainer log dict": re.compile(r"\{'(?:loss|eval_loss|train_runtime|epoch)': "),
}
_DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")


def _read(nb_path) -> nbformat.NotebookNode:
    return nbformat.read(os.fspath(nb_path), as_version=4)


def _outputs(nb):
    for i, cell in enumerate(nb.cells):
        if cell.get("cell_type") == "code":
            for out in cell.get("outputs", []):
                yield i, out


def inline_images(nb_path) -> int:
    """How many outputs of the executed notebook show an image."""
    return sum(1 for _, out in _outputs(_read(nb_path))
               if any(m in out.get("data", {}) for m in IMAGE_MIMES))


def figure_markers(nb_path) -> list[dict]:
    """Every ``save_figure`` marker: ``{"cell": i, "figure": name, "shown": bool, "image": bool}``."""
    found = []
    for i, out in _outputs(_read(nb_path)):
        mark = out.get("metadata", {}).get("sflib")
        if isinstance(mark, dict) and "figure" in mark:
            found.append({"cell": i, "figure": mark["figure"], "shown": bool(mark.get("shown")),
                          "image": any(m in out.get("data", {}) for m in IMAGE_MIMES)})
    return found


def saved_figures(nb_path) -> list[str]:
    """Names passed to ``save_figure`` while the notebook ran, in order."""
    return [m["figure"] for m in figure_markers(nb_path)]


def unshown_figures(nb_path) -> list[str]:
    """Saved figures that did not come with an inline image."""
    return [m["figure"] for m in figure_markers(nb_path) if not (m["shown"] and m["image"])]


def _texts(out) -> list[tuple[str, str]]:
    kind = out.get("output_type")
    if kind == "stream":
        return [(out.get("name", "stream"), out.get("text", ""))]
    if kind == "error":
        return [("error", f"{out.get('ename')}: {out.get('evalue')}\n" + "\n".join(out.get("traceback", [])))]
    texts = []
    for mime in TEXT_MIMES:
        value = out.get("data", {}).get(mime)
        if value is not None:
            value = "".join(value) if isinstance(value, list) else str(value)
            texts.append((mime, _DATA_URI.sub("data:", value)))
    return texts


def _is_progress(out: dict) -> bool:
    """A widget output that is a progress bar: tqdm's (an HBox of HTML and FloatProgress/IntProgress) or any
    widget that is not a composed layout (a VBox / Box, as notebook 08's annotator is)."""
    text = str(out.get("data", {}).get("text/plain", ""))
    return not text.startswith(("VBox(", "Box("))


def widgets(nb_path) -> list[str]:
    """The interactive (non-progress) widgets a reader sees, one line each: ``cell N: excerpt``."""
    return [f"cell {i}: {str(out['data'].get('text/plain', ''))[:80]}" for i, out in _outputs(_read(nb_path))
            if "application/vnd.jupyter.widget-view+json" in out.get("data", {}) and not _is_progress(out)]


def noise(nb_path) -> list[str]:
    """What a reader should not see in the outputs, one line each: ``cell N: kind: excerpt``."""
    found = []
    for i, out in _outputs(_read(nb_path)):
        if out.get("output_type") == "error":
            found.append(f"cell {i}: traceback: {out.get('ename')}: {str(out.get('evalue'))[:80]}")
            continue
        if "application/vnd.jupyter.widget-view+json" in out.get("data", {}):
            if _is_progress(out):  # an interactive widget (notebook 08's annotator) is the point, not noise
                found.append(f"cell {i}: progress widget: {out['data'].get('text/plain', '')[:80]!s}".rstrip())
        for where, text in _texts(out):
            if where == "stderr" and text.strip():
                kinds = [k for k, p in PATTERNS.items() if p.search(text)] or ["stderr"]
            else:
                kinds = [k for k, p in PATTERNS.items() if p.search(text)]
            for kind in kinds:
                m = PATTERNS[kind].search(text) if kind in PATTERNS else None
                start = max(0, (m.start() if m else 0) - 30)
                excerpt = " ".join(text[start:start + 100].split())
                found.append(f"cell {i}: {kind}: {excerpt}")
    return found


def make_notebook(cells: list[str], path, *, parameters: str | None = None) -> Path:
    """Write a notebook of code ``cells`` (the first tagged ``parameters`` when given) to ``path``."""
    nb = nbformat.v4.new_notebook()
    if parameters is not None:
        nb.cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = Path(path)
    nbformat.write(nb, os.fspath(path))
    return path


def execute(nb_in, nb_out, *, parameters: dict | None = None, cwd=None, timeout: int = 300) -> Path:
    """Run a notebook with papermill (the ``python3`` kernel; the kernel inherits this environment)."""
    import papermill

    papermill.execute_notebook(os.fspath(nb_in), os.fspath(nb_out), parameters=parameters or {},
                               kernel_name="python3", cwd=os.fspath(cwd) if cwd else None,
                               progress_bar=False, log_output=False, execution_timeout=timeout)
    return Path(nb_out)


def check(nb_path) -> dict:
    """All of the above for one notebook (for a test's failure message)."""
    return {"notebook": Path(nb_path).name, "inline_images": inline_images(nb_path),
            "saved_figures": saved_figures(nb_path), "unshown": unshown_figures(nb_path), "noise": noise(nb_path)}


__all__ = ["inline_images", "saved_figures", "figure_markers", "unshown_figures", "noise", "widgets", "check", "PATTERNS",
           "make_notebook", "execute"]
