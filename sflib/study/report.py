"""``python -m sflib study report STUDY``: the study as one self-contained HTML file.

The report renders the same :class:`sflib.core.findings.Findings` objects the notebooks display — one per
stage, from each stage's findings function — so every number in it is the notebooks' number: the question,
the data, every finding with its interval and small-n flags, the figures (embedded as PNG), what was left out
and why, and a "paper vs this run" table that holds only what the paper's abstract states
(:mod:`sflib.core.paper`). A stage whose outputs do not exist yet, or whose findings function this version
of sflib does not have, is shown as "not available" with the reason; the report is written anyway.
"""
from __future__ import annotations

import base64
import html
import importlib
import inspect
import io
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from ..core import paper
from ..core.findings import Findings

#: stage -> (title, module, function) of each stage's findings; imported when the report is written
STAGES: tuple[tuple[str, str, str, str], ...] = (
    ("00", "The study's inputs", "sflib.study.inventory", "findings"),
    ("01", "Responses", "sflib.generation.findings", "findings"),
    ("02", "Ratings", "sflib.feedback.findings", "ratings_findings"),
    ("03", "Rankings", "sflib.feedback.findings", "rankings_findings"),
    ("04", "Consistency of ratings and rankings", "sflib.consistency.findings", "findings"),
    ("05", "Reward models", "sflib.rm.findings", "findings"),
    ("06", "Best-of-n", "sflib.bon.findings", "findings"),
    ("07", "Evaluation", "sflib.evaluation.findings", "findings"),
    ("08", "Human feedback", "sflib.human.findings", "findings"),
    ("09", "Feedback protocols compared", "sflib.protocols.study", "saved_findings"),
)

QUESTION = ("How does the form of feedback — absolute ratings (1–7) or pairwise rankings — change what we learn "
            "when we align a language model? How often do the two forms disagree, and does the evaluation "
            "protocol decide which feedback form looks better?")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin-bottom:.3em} table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1em;
display:block;overflow-x:auto;max-width:100%} th,td{border-bottom:1px solid #e4e4e4;padding:.25em .6em;text-align:left;
vertical-align:top;max-width:420px} th{background:#f5f5f5} p.headline{font-size:1.08em;background:#f3f7fb;
border-left:4px solid #0072B2;padding:.5em .8em} p.note{color:#555;font-size:.92em;margin:.3em 0}
.missing{color:#a33;background:#fbf1f1;border-left:4px solid #c55;padding:.5em .8em}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee} figcaption{font-size:.85em;color:#555}
nav ul{columns:2;font-size:.95em} .meta{color:#666;font-size:.9em}
"""


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _call(fn: Callable, study, bootstrap: int) -> Findings | dict:
    params = inspect.signature(fn).parameters
    kwargs = {k: v for k, v in (("bootstrap", bootstrap), ("quick", False)) if k in params}
    return fn(study, **kwargs)


def stage_findings(study, *, bootstrap: int = 2000,
                   log: Callable[[str], None] | None = None) -> dict[str, Findings | str]:
    """Each stage's findings for ``study``: ``{stage: Findings}``, or ``{stage: "not available: why"}``."""
    import warnings

    out: dict[str, Findings | str] = {}
    for stage, _, module, name in STAGES:
        start = time.perf_counter()
        try:
            fn = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            out[stage] = f"not available: this version of sflib has no {module}.{name}"
            if log:
                log(f"{stage}: {out[stage]}")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = _call(fn, study, bootstrap)
            out[stage] = got if isinstance(got, Findings) else f"not available: {module}.{name} returned no findings"
        except Exception as e:  # a stage not run yet (StageMissing), stale, or a library error: say why, go on
            out[stage] = f"not available: {type(e).__name__}: {' '.join(str(e).split())[:400]}"
        if log:
            log(f"{stage}: {'findings' if isinstance(out[stage], Findings) else out[stage]} "
                f"({time.perf_counter() - start:.1f} s)")
    return out


def paper_vs_this_run(found: dict[str, Findings | str]) -> pd.DataFrame:
    """One row per finding the paper's abstract states: the statement, this run's answer (the stage's
    headline and its estimates, or why there is none), and where the paper says it."""
    rows = []
    stage_of = {"consistency": "04", "evaluation": "07"}
    for s in paper.statements():
        f = found.get(stage_of[s.topic])
        if isinstance(f, Findings):
            ours = f.headline or "; ".join(e.text() for e in f.estimates[:3])
            if s.topic == "consistency" and "humans_beside_ai" in f.absent:
                ours += f" Human annotators: {f.absent['humans_beside_ai']}."
        else:
            ours = f"stage {stage_of[s.topic]} {f or 'not available'}"
        rows.append({"the paper (abstract)": s.statement, "this run": ours, "source": s.source})
    return pd.DataFrame(rows)


def exclusions_table(found: dict[str, Findings | str]) -> pd.DataFrame:
    """Every non-zero exclusion: one row per reason, one column per stage that reports it (the same rule gives
    the same count in every stage that uses the data; blank where a stage does not use it)."""
    rows = [{"stage": st, "left out": k.split(": ", 1)[1] if k.split(": ", 1)[0] in _PREFIXES else k, "count": v,
             "data": k.split(": ", 1)[0] if k.split(": ", 1)[0] in _PREFIXES else ""}
            for st, f in found.items() if isinstance(f, Findings) for k, v in f.exclusions.items() if v]
    if not rows:
        return pd.DataFrame(columns=["left out"])
    df = pd.DataFrame(rows)
    df["data"] = df["data"].replace({"released ratings": "the paper's released ratings",
                                     "released rankings": "the paper's released rankings"})
    df.loc[(df["data"] == "") & (df["stage"] == "02"), "data"] = "ratings"
    df.loc[(df["data"] == "") & (df["stage"] == "03"), "data"] = "rankings"
    df.loc[(df["data"] == "") & (df["stage"] == "07"), "data"] = "evaluation judgments"
    df.loc[df["data"] == "", "data"] = "ranked pairs vs ratings"
    table = df.pivot_table(index=["data", "left out"], columns="stage", values="count", aggfunc="sum")
    table = table.astype("Int64").astype(object).where(table.notna(), "")
    table.columns = [f"stage {c}" for c in table.columns]  # one header row: data, left out, stage 00, 02, ...
    return table.reset_index()


_PREFIXES = ("ratings", "rankings", "released ratings", "released rankings")


def render(study, found: dict[str, Findings | str]) -> str:
    """The report's HTML (one string, no external resources)."""
    esc = html.escape
    title = f"Study {study.name}: ratings vs rankings feedback"
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>{esc(title)}</h1>",
             f"<p class='meta'>{esc(study.config.description or '')} · written "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by <code>python -m sflib study report</code> "
             f"from the study folder's stage outputs</p>",
             f"<h2>Question</h2><p>{esc(QUESTION)}</p>",
             "<p>Paper: Bansal, Dang, Grover, <i>Peering Through Preferences: Unraveling Feedback Acquisition for "
             f"Aligning Large Language Models</i>, ICLR 2024, <a href='{paper.URL}'>{paper.ARXIV}</a>. Only its "
             "abstract is reachable here; the table below holds only what the abstract states.</p>",
             "<nav><b>Contents</b><ul><li><a href='#paper'>Paper vs this run</a></li>"
             "<li><a href='#data'>Data</a></li><li><a href='#excluded'>What was left out</a></li>"
             + "".join(f"<li><a href='#stage-{st}'>{st} · {esc(t)}</a></li>" for st, t, _, _ in STAGES)
             + "</ul></nav>",
             "<h2 id='paper'>Paper vs this run</h2>",
             paper_vs_this_run(found).to_html(index=False, border=0, escape=True)]
    f00 = found.get("00")
    parts.append("<h2 id='data'>Data</h2>")
    if isinstance(f00, Findings) and "study" in f00.tables:
        parts.append(f00.tables["study"].to_html(border=0))
    parts.append("<h2 id='excluded'>What was left out, and why</h2><p>Every stage counts ratings and rankings by one "
                 "rule (<code>sflib.feedback.clean</code>): replies without a valid answer (invalid or failed), later "
                 "duplicates of a rated response or ranked pair (the first is kept), feedback on items that are not "
                 "the study's, and the items left without feedback (<i>missing</i>).</p>")
    excl = exclusions_table(found)
    parts.append(excl.to_html(border=0, index=False) if len(excl) else "<p>Nothing was left out.</p>")
    for stage, name, _, _ in STAGES:
        f = found.get(stage, "not available")
        if not isinstance(f, Findings):
            parts.append(f"<section id='stage-{stage}'><h2>{stage} · {esc(name)}</h2>"
                         f"<p class='missing'>{esc(f)}</p></section>")
            continue
        body = f.to_html(skip=("study",) if stage == "00" else ())  # the study table is the Data section
        figs = "".join(f"<figure><img alt='{esc(k)}' src='data:image/png;base64,{_png(fig)}'>"
                       f"<figcaption>{esc(stage)}_{esc(k)}</figcaption></figure>" for k, fig in f.figures.items()
                       if fig is not None)
        parts.append(body.replace("</section>", figs + "</section>") if body.endswith("</section>") else body + figs)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(study, output: str | Path | None = None, *, bootstrap: int = 2000,
                 log: Callable[[str], None] | None = None) -> Path:
    """Compute every stage's findings and write the report (default ``<study folder>/report.html``)."""
    from ..core.data import atomic_write_text

    path = Path(output) if output else Path(study.folder) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, render(study, stage_findings(study, bootstrap=bootstrap, log=log)))
    return path


def copy_docs_figures(study, docs: str | Path) -> list[Path]:
    """Refresh the README's figures from this run: every PNG already in ``docs`` (``docs/figures/``) is
    replaced by the file of the same name in the study's figures folder (:func:`sflib.plots.study_figures_dir`).
    Returns the files replaced; raises :class:`FileNotFoundError` naming the ones this run did not draw
    (after replacing the others), so a stale figure is never left behind silently."""
    import shutil

    from ..plots.figures import study_figures_dir

    src, docs = study_figures_dir(study), Path(docs)
    names = sorted(p.name for p in docs.glob("*.png"))
    copied = [Path(shutil.copyfile(src / n, docs / n)) for n in names if (src / n).exists()]
    missing = [n for n in names if not (src / n).exists()]
    if missing:
        raise FileNotFoundError(f"{src} has no {', '.join(missing)} from this run (refreshed: "
                                f"{', '.join(p.name for p in copied) or 'none'}); run those notebooks first "
                                f"(python -m sflib study run {study.name})")
    return copied


__all__ = ["write_report", "copy_docs_figures", "render", "stage_findings", "paper_vs_this_run", "exclusions_table", "STAGES"]
