"""What notebook 08 calls: open the annotation widgets for its parameters, then analyse the answers.

Notebook 08 stays thin — a parameters cell, one call per cell, display::

    work = human.notebook.open_annotation(study=study, annotator=annotator, ...)   # or one clear line, and stop
    display(*work.widgets())
    result = human.notebook.analyse(work, bootstrap=..., seed=..., simulate=simulate)
    display(*result.who_answered()); display(*result.agreement_view()); ...

- :func:`open_annotation` picks the items (the study's first ``n_instructions`` instructions: all their
  responses to rate and pairs to rank), shares them among a ``team`` with an ``overlap``
  (:func:`~sflib.human.items.assign`) or gives the annotator every item, and opens one
  :class:`~sflib.human.widget.HumanAnnotator` per kind. A refused name or an annotator open in another
  kernel raises :class:`Stop`: one line (no traceback) that stops "Run All".
- :func:`analyse` reads the store once. With no human answers yet each analysis cell shows
  :data:`NO_ANSWERS_YET` instead of results (and the figure shows the AI judge alone); ``simulate=True``
  analyses a clearly labelled simulated example instead (never written to the real store).
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .items import assign, check_kind, ranking_items, rating_items
from .lease import AnnotatorBusy, normalise_name

NO_ANSWERS_YET = "no answers yet — annotate above, then run the cells below"
SIMULATED = "SIMULATED annotators (noisy copies of the AI judge; not human data)"


class Stop(Exception):
    """Notebook 08 cannot go on; shown as its one-line message (IPython's ``_render_traceback_``), it stops Run All."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[1;31mStopped:\x1b[0m {self}"]


def _markdown(text: str):
    from IPython.display import Markdown

    return Markdown(text)


@dataclass
class Annotation:
    """The open annotation of one person: ``store``, ``material`` (:func:`~sflib.human.sources.study_material`),
    ``items`` and ``assignment`` per kind, and ``annotators`` (a :class:`HumanAnnotator` per kind)."""

    annotator: str
    store: Any
    material: dict
    items: dict[str, pd.DataFrame]
    assignment: dict[str, pd.DataFrame | None]
    annotators: dict[str, Any] = field(default_factory=dict)

    def description(self) -> str:
        """Where the items come from, how many there are, and how they are shared."""
        what = {"ratings": "responses to rate", "rankings": "pair screens to rank"}
        counts = " and ".join(f"{len(a.session.queue)} {what[k]}" for k, a in self.annotators.items())
        plan = next((p for p in self.assignment.values() if p is not None), None)
        if plan is None:
            shared = "every item is yours"
        else:
            names, seen_by_more = sorted(plan["annotator"].unique()), plan.groupby("item_id")["overlap"].first().mean()
            shared = (f"shared among {len(names)} annotators ({', '.join(names)}); {seen_by_more:.0%} of the items "
                      "are seen by two or more")
        return (f"**{self.annotator}**: {counts} from {self.material['source']}; {shared}. Answers go to "
                f"`{Path(self.store.path).name}` in the outputs folder as judge `human:{self.annotator}`.")

    def widgets(self) -> list:
        """What to display: a line about the items, then a heading and the widget per kind."""
        out = [_markdown(self.description())]
        for k, a in self.annotators.items():
            heading = "Rate each response" if k == "ratings" else "Rank each pair"
            out += [_markdown(f"**{heading}** — {a.session.judge}"), a.widget]
        return out

    def close(self) -> None:
        """Release the annotator (another kernel may open it then); every answer is already stored."""
        for a in self.annotators.values():
            a.close()


def default_annotator(material: dict) -> str:
    """The study's feedback judge's name when it is ``human:<name>`` (08 then answers as that judge), else
    ``annotator-1``."""
    judge = str(material.get("feedback_judge") or "")
    return judge.split(":", 1)[1] if judge.startswith("human:") else "annotator-1"


def select_items(material: dict, n_instructions: int) -> dict[str, pd.DataFrame]:
    """The first ``n_instructions`` instructions of the study's pairs: all their responses and all their pairs."""
    if int(n_instructions) < 1:
        raise ValueError(f"n_instructions must be 1 or more, got {n_instructions!r}")
    pairs = ranking_items(material["pairs"])
    chosen = list(dict.fromkeys(pairs["instruction_id"]))[:int(n_instructions)]
    ratings = rating_items(material["responses"])
    return {"ratings": ratings[ratings["instruction_id"].isin(chosen)].reset_index(drop=True),
            "rankings": pairs[pairs["instruction_id"].isin(chosen)].reset_index(drop=True)}


def open_annotation(*, study: str = "paper", annotator: str | None = None, kind: str = "both",
                    n_instructions: int = 2, team: Sequence[str] | None = None, overlap: float = 0.2,
                    per_item: int = 2, both_orders: float = 0.2, store_path: Any = None, force: bool = False,
                    seed: int = 0) -> Annotation:
    """Open the annotation widgets of notebook 08 (its parameters, same names). ``team``: everyone's names
    when the items are shared out (``annotator`` must be one of them); ``None``: the annotator gets every item.
    Anything that stops annotating is a :class:`Stop` with one line saying what to change."""
    from ..core import paths
    from ..feedback.store import AnnotationStore
    from .sources import study_material
    from .widget import HumanAnnotator

    try:
        material = study_material(study)
        name = normalise_name(annotator if annotator is not None else default_annotator(material))
        kinds = ["ratings", "rankings"] if kind == "both" else [check_kind(kind)]
        items = select_items(material, n_instructions)
        plans: dict[str, pd.DataFrame | None] = {k: None for k in kinds}
        if team:
            names = [normalise_name(a) for a in team]
            if name not in names:
                raise ValueError(f"annotator {name!r} is not in team {list(team)!r}: add the name to team or "
                                 "set annotator to one of them")
            plans = {k: assign(items[k], names, kind=k, overlap=overlap, per_item=per_item,
                               both_orders=both_orders, seed=seed) for k in kinds}
        store = AnnotationStore(store_path or paths.outputs_dir() / "annotations.sqlite")
    except ValueError as e:
        raise Stop(f"{e} — fix it in the parameters cell and run again") from None
    work = Annotation(name, store, material, {k: items[k] for k in kinds}, plans)
    try:
        for k in kinds:
            work.annotators[k] = HumanAnnotator(items[k], name, store, k, assignment=plans[k], seed=seed,
                                                both_orders=both_orders, force=force)
    except (AnnotatorBusy, ValueError) as e:
        work.close()
        raise Stop(str(e)) from None
    return work


@dataclass
class Analysis:
    """The answers in the store at one moment (``at``), analysed; each ``*_view`` is a list to display."""

    annotation: Annotation
    summary: pd.DataFrame
    feedback: dict
    simulated: bool
    table: pd.DataFrame
    agreement: pd.DataFrame
    bias: pd.DataFrame
    at: str

    @property
    def empty(self) -> bool:
        return not self.feedback

    @property
    def label(self) -> str:
        return SIMULATED if self.simulated else "human annotators"

    def _header(self) -> list:
        if self.empty:
            return [_markdown(f"**{NO_ANSWERS_YET}**")]
        return [_markdown(f"**Analysed below: {self.label}** — {', '.join(self.feedback)} (the store at {self.at}; "
                          "after more answers, run the cells below again)")]

    def who_answered(self) -> list:
        """Every human judge in the store with answered and skipped counts."""
        return [self.summary, *self._header()] if len(self.summary) else self._header()

    def agreement_view(self) -> list:
        """Cohen / Fleiss / Krippendorff on the items two or more annotators judged."""
        if self.empty:
            return self._header()
        few = [] if len(self.feedback) >= 2 else [_markdown("_agreement needs two annotators with overlapping items_")]
        return [*few, _markdown(f"**{self.label}**"), self.agreement]

    def beside_ai_view(self) -> list:
        """Each annotator's ratings-vs-rankings consistency beside the AI judge's, and position bias."""
        if self.empty:
            return self._header()
        return [_markdown(f"**{self.label}**"), self.table,
                _markdown("Position bias of each annotator (pairs shown in both orders):"), self.bias]

    def figure(self):
        """Consistency bars (humans beside the AI judge; with no answers yet, the AI judge alone) and agreement."""
        from .figures import plot_consistency_beside_ai

        fig = plot_consistency_beside_ai(self.table, self.agreement if len(self.feedback) >= 2 else None)
        if self.simulated:
            fig.suptitle("SIMULATED annotators (not human data)")
        elif self.empty:
            fig.suptitle(f"The AI judge alone: {NO_ANSWERS_YET}")
        return fig


def _ai(material: dict) -> dict:
    """The AI judge's feedback to compare with (none when the study's feedback judge is itself a human)."""
    if material["ai_ratings"] is None or material["ai_rankings"] is None or \
            str(material["ai_name"]).startswith("human:"):
        return {}
    return {material["ai_name"]: (material["ai_ratings"], material["ai_rankings"])}


def analyse(work: Annotation, *, bootstrap: int = 1000, seed: int = 0, simulate: bool = False,
            quick: bool = False) -> Analysis:
    """The store's human answers analysed: who answered, agreement on the overlap, consistency beside the AI
    judge, position bias. ``simulate=True`` and no human answers: a labelled simulated example instead
    (written to a temporary store, never the real one). ``quick``: at most 200 bootstrap resamples and a
    smaller simulated example."""
    from ..consistency import agreement
    from ..feedback.rankings import position_bias
    from ..feedback.store import AnnotationStore
    from .feedback import all_feedback, annotator_summary
    from .headline import AGREEMENT_COLUMNS, overlap_agreement
    from .sources import simulated_answers

    summary = annotator_summary(work.store)
    feedback = all_feedback(work.store)
    simulated = bool(simulate) and not feedback
    if simulated:
        sim_store = AnnotationStore(Path(tempfile.mkdtemp()) / "simulated.sqlite")
        simulated_answers(sim_store, work.material, n_instructions=4 if quick else 8, seed=seed)
        feedback = all_feedback(sim_store)
        sim_store.close()
    bootstrap = min(bootstrap, 200) if quick else bootstrap
    table = agreement.human_vs_ai(feedback, _ai(work.material), bootstrap=bootstrap, seed=seed)
    if simulated:
        table["judge"] = [f"{j} (simulated)" if w == "human" else j for j, w in zip(table["judge"], table["who"])]
    agree = overlap_agreement(feedback) if feedback else pd.DataFrame(columns=AGREEMENT_COLUMNS)
    bias = pd.DataFrame({n: position_bias(k) for n, (_, k) in feedback.items()}).T
    bias = bias[["pairs", "first_pick_rate", "disagreement_rate"]] if len(bias) else bias
    return Analysis(work, summary, feedback, simulated, table, agree, bias, time.strftime("%H:%M:%S"))
