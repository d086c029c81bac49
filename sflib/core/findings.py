"""What a stage found, as one object a notebook displays and the study report renders.

Each stage package has one function that computes its findings for a study, e.g.
``sflib.consistency.findings.findings(study) -> Findings``; a notebook calls it and displays the
result, ``python -m sflib study report`` renders the same objects into one HTML file. Nothing here
computes a number: this module only holds and renders what the stage computed.

- ``counts``: named counts, each stated once (``{"responses rated": 97, ...}``).
- ``exclusions``: what was left out and why, by one documented rule (reason -> count).
- ``estimates``: the headline numbers with their intervals (:class:`Estimate`).
- ``tables``: named tables (pandas DataFrames) the notebook shows.
- ``figures``: named matplotlib figures (saved by the stage under the study's figures folder).
- ``notes``: sentences in Markdown: small-n flags, caveats, what could not be computed and why.
- ``absent``: tables or figures left out and why (a group without data is not drawn).
- ``headline``: the stage's result in one or two sentences, every number in it taken from the fields above.

In a notebook: ``f = findings(study)`` then ``f`` (its Markdown), ``f.show("table or figure name")``
(a table is returned for display; a figure is saved as ``<stage>_<name>`` under ``f.figures_folder``
and shown inline once).
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Estimate:
    """One number with its interval: ``value`` in the unit given (``"%"`` for percentages)."""
    name: str
    value: float
    low: float | None = None
    high: float | None = None
    n: int | None = None
    unit: str = ""
    method: str = ""  # e.g. "Wilson 95%", "paired bootstrap 95%"
    note: str = ""

    @classmethod
    def share(cls, name: str, k: int, n: int, note: str = "") -> "Estimate":
        """A proportion ``k / n`` in percent with its Wilson 95% interval (never zero width; NaN when n = 0)."""
        from .stats import proportion

        value, low, high = proportion(k, n)
        if not n:
            note = note or "no items"
        return cls(name, value, low, high, n=int(n), unit="%", method="Wilson 95%", note=note)

    def text(self, digits: int | None = None) -> str:
        """``name: value (method low–high), n = N — note``; one decimal for percentages, two otherwise."""
        if digits is None:
            digits = 1 if self.unit.strip() in ("%", "words") else 2
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return f"{self.name}: not computed" + (f" ({self.note})" if self.note else "")
        s = f"{self.name}: {self.value:.{digits}f}{self.unit}"
        if self.low is not None and self.high is not None:
            s += f" ({self.method or '95% CI'}: {self.low:.{digits}f}–{self.high:.{digits}f}{self.unit})"
        if self.n is not None:
            s += f", n = {self.n}"
        if self.note:
            s += f" — {self.note}"
        return s


def _number(v: float) -> str:
    """Floats in report tables: whole numbers with thousands separators, others to 3 significant digits."""
    return f"{v:,.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:.3g}"


def _plain_index(table) -> bool:
    import pandas as pd

    return isinstance(table.index, pd.RangeIndex) and table.index.name is None


def _short_texts(table, width: int):
    """A copy with every text cell longer than ``width`` characters cut (HTML tables of examples stay readable)."""
    import pandas as pd

    out = table.copy()
    for c in out.columns:
        if out[c].dtype == object or pd.api.types.is_string_dtype(out[c]):
            out[c] = [v if not isinstance(v, str) or len(v) <= width else v[: width - 1] + "…" for v in out[c]]
    return out


@dataclass
class Findings:
    stage: str
    title: str
    counts: dict[str, int] = field(default_factory=dict)
    exclusions: dict[str, int] = field(default_factory=dict)
    estimates: list[Estimate] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    headline: str = ""
    absent: dict[str, str] = field(default_factory=dict)  # table/figure name -> why it is not there
    figures_folder: Any = None  # where show() saves a figure (None: sflib.plots' default folder)

    def estimate(self, name: str) -> Estimate:
        for e in self.estimates:
            if e.name == name:
                return e
        raise KeyError(f"stage {self.stage} has no estimate {name!r} (has: {[e.name for e in self.estimates]})")

    def detached(self) -> "Findings":
        """Take the figures out of pyplot's list of open figures (they stay drawable and savable), so a
        notebook's inline backend does not draw them at the end of the cell that computed them: each is shown
        once, where :meth:`show` shows it. Returns ``self``."""
        import matplotlib.pyplot as plt

        for fig in self.figures.values():
            if fig is not None:
                plt.close(fig)
        return self

    def show(self, name: str):
        """A table by name (returned, so a notebook cell displays it), or a figure by name: saved as
        ``<stage>_<name>`` (PNG and PDF) under :attr:`figures_folder` and shown inline once. A name this
        stage has nothing for returns a one-line note saying so (e.g. a group without data is left out)."""
        if name == "headline":
            from IPython.display import Markdown

            return Markdown(f"**Result.** {self.headline}")
        if name in self.tables:
            return self.tables[name]
        if name in self.figures:
            from ..plots import save_figure

            return save_figure(self.figures[name], f"{self.stage}_{name}", self.figures_folder)
        from IPython.display import Markdown

        return Markdown(f"*{name}: nothing to show for this study* — " + (self.absent.get(name) or "no data"))

    def exclusions_text(self) -> str:
        """The non-zero exclusions, then how many other named reasons counted 0."""
        nonzero = [f"{k}: {v:,}" for k, v in self.exclusions.items() if v]
        zero = [k for k, v in self.exclusions.items() if not v]
        text = "; ".join(nonzero) or "nothing"
        if zero:
            text += f" (0 for each other reason: {', '.join(zero)})"
        return text

    def to_markdown(self) -> str:
        lines = [f"**{self.title}**", ""]
        if self.headline:
            lines += [self.headline, ""]
        if self.counts:
            lines += [f"- {k}: {v:,}" for k, v in self.counts.items()]
        if self.exclusions:
            lines += ["", "Left out: " + self.exclusions_text()]
        if self.estimates:
            lines += [""] + [f"- {e.text()}" for e in self.estimates]
        if self.notes:
            lines += [""] + "\n>\n".join(f"> {n}" for n in self.notes).splitlines()  # one paragraph per note
        if self.absent:
            lines += ["", "Not shown: " + "; ".join(f"{k} ({v})" for k, v in self.absent.items())]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def __repr__(self) -> str:  # the plain-text view (text/plain in a notebook): the same words, no object dump
        return self.to_markdown()

    def to_html(self, skip: tuple[str, ...] = (), width: int = 300) -> str:
        """A self-contained HTML section (tables inline, texts cut at ``width`` characters, tables named in
        ``skip`` left out; figures are added by the report)."""
        esc = html.escape
        parts = [f"<section id='stage-{esc(self.stage)}'><h2>{esc(self.stage)} · {esc(self.title)}</h2>"]
        if self.headline:
            parts.append(f"<p class='headline'>{esc(self.headline)}</p>")
        if self.counts:
            parts.append("<ul>" + "".join(f"<li>{esc(k)}: {v:,}</li>" for k, v in self.counts.items()) + "</ul>")
        if self.exclusions:
            parts.append("<p><b>Left out:</b> " + esc(self.exclusions_text()) + "</p>")
        if self.estimates:
            parts.append("<ul>" + "".join(f"<li>{esc(e.text())}</li>" for e in self.estimates) + "</ul>")
        for name, table in self.tables.items():
            if name in skip or getattr(table, "to_html", None) is None:
                continue
            parts.append(f"<h3>{esc(name)}</h3>" + _short_texts(table, width).to_html(
                index=not _plain_index(table), border=0, na_rep="—", float_format=_number))
        if self.notes:
            parts.append("".join(f"<p class='note'>{esc(n)}</p>" for n in self.notes))
        if self.absent:
            parts.append("<p class='note'><b>Not shown:</b> " + "; ".join(f"{esc(k)} ({esc(v)})"
                                                                    for k, v in self.absent.items()) + "</p>")
        parts.append("</section>")
        return "\n".join(parts)
