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

    def text(self, digits: int = 1) -> str:
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return f"{self.name}: not computed" + (f" ({self.note})" if self.note else "")
        s = f"{self.name}: {self.value:.{digits}f}{self.unit}"
        if self.low is not None and self.high is not None:
            s += f" ({self.method or '95% CI'} {self.low:.{digits}f}–{self.high:.{digits}f}{self.unit})"
        if self.n is not None:
            s += f", n = {self.n}"
        if self.note:
            s += f" — {self.note}"
        return s


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

    def estimate(self, name: str) -> Estimate:
        for e in self.estimates:
            if e.name == name:
                return e
        raise KeyError(f"stage {self.stage} has no estimate {name!r} (has: {[e.name for e in self.estimates]})")

    def to_markdown(self) -> str:
        lines = [f"**{self.title}**", ""]
        if self.counts:
            lines += [f"- {k}: {v:,}" for k, v in self.counts.items()]
        if self.exclusions:
            lines += ["", "Left out: " + "; ".join(f"{k}: {v:,}" for k, v in self.exclusions.items())]
        if self.estimates:
            lines += [""] + [f"- {e.text()}" for e in self.estimates]
        if self.notes:
            lines += [""] + [f"> {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def to_html(self) -> str:
        """A self-contained HTML section (tables inline; figures are added by the report)."""
        esc = html.escape
        parts = [f"<section id='stage-{esc(self.stage)}'><h2>{esc(self.stage)} · {esc(self.title)}</h2>"]
        if self.counts:
            parts.append("<ul>" + "".join(f"<li>{esc(k)}: {v:,}</li>" for k, v in self.counts.items()) + "</ul>")
        if self.exclusions:
            parts.append("<p><b>Left out:</b> " + "; ".join(f"{esc(k)}: {v:,}" for k, v in self.exclusions.items())
                         + "</p>")
        if self.estimates:
            parts.append("<ul>" + "".join(f"<li>{esc(e.text())}</li>" for e in self.estimates) + "</ul>")
        for name, table in self.tables.items():
            to_html = getattr(table, "to_html", None)
            if to_html is not None:
                parts.append(f"<h3>{esc(name)}</h3>" + to_html(index=False, border=0, na_rep="—"))
        if self.notes:
            parts.append("".join(f"<p class='note'>{esc(n)}</p>" for n in self.notes))
        parts.append("</section>")
        return "\n".join(parts)
