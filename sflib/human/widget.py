"""The annotator widget (ipywidgets): rate 1–7 or choose a / b / equal, with skip, undo and a comment.

``HumanAnnotator(items, annotator="alice", store=..., kind="ratings")`` then display ``.widget``.
Every click calls :class:`~sflib.human.session.AnnotationSession`, which writes the answer to the
store before the next task is shown.

Keyboard shortcuts. ipywidgets has no page-wide key events, so the widget has a small
"keys" text box: click into it once, then each key pressed there acts at once (the box is read
and cleared on every keystroke): ``1``–``7`` rate, ``a`` / ``b`` / ``e`` (or ``=``) choose,
``s`` skips, ``u`` undoes. Focus stays in the box, so one can annotate with the keyboard only.
Buttons carry CSS classes (``sf-rate-5``, ``sf-choice-a``, ``sf-skip``, ``sf-undo``, ``sf-keys``,
``sf-progress``)
so a browser test can find them.
"""
from __future__ import annotations

import html
from typing import Any

from .session import CHOICES, SCORES, AnnotationSession, instructions

KEYS = {"ratings": {str(s): s for s in SCORES},
        "rankings": {"a": "a", "b": "b", "e": "equal", "=": "equal"}}
SCORE_LABELS = {1: "terrible", 2: "very poor", 3: "poor", 4: "acceptable", 5: "good", 6: "very good", 7: "perfect"}


def _pre(text: str) -> str:
    return ("<div style='white-space:pre-wrap;font-family:var(--jp-content-font-family,sans-serif);"
            "border:1px solid #ccc;padding:6px;max-height:22em;overflow:auto'>" + html.escape(str(text)) + "</div>")


class HumanAnnotator:
    """A notebook widget for one annotator; ``.widget`` is what to display, ``.session`` the engine.

    Arguments as :class:`~sflib.human.session.AnnotationSession`. Opening an annotator that another
    live kernel holds raises :class:`~sflib.human.lease.AnnotatorBusy` with the way out
    (``force=True``); a bad name raises ``ValueError`` saying which characters are wrong.
    """

    def __init__(self, items, annotator: str, store: Any = None, kind: str = "ratings", **session_kwargs):
        import ipywidgets as w

        self.session = AnnotationSession(items, annotator, store, kind, **session_kwargs)
        self.kind = self.session.kind
        self.title = w.HTML()
        self.progress_bar = w.IntProgress(min=0, max=max(len(self.session.queue), 1), layout=w.Layout(width="260px"))
        self.progress_label = w.Label()
        self.progress_label.add_class("sf-progress")
        self.message = w.HTML()
        guide = w.HTML(_pre(instructions(self.kind)))
        self.guide = w.Accordion(children=[guide], titles=("How to judge",))
        self.guide.selected_index = 0 if self.kind == "ratings" else None
        self.task_html = w.HTML()
        if self.kind == "ratings":
            self.buttons = {s: w.Button(description=str(s), tooltip=f"{s} = {SCORE_LABELS[s]}",
                                        layout=w.Layout(width="48px")) for s in SCORES}
            legend = w.HTML("<small>1 = terrible: useless, wrong or harmful · 4 = acceptable, with clear problems · "
                            "7 = perfect: cannot be improved</small>")
        else:
            labels = {"a": "Output (a) is better", "b": "Output (b) is better", "equal": "Equal"}
            self.buttons = {c: w.Button(description=labels[c], layout=w.Layout(width="170px")) for c in CHOICES}
            legend = w.HTML("")
        for value, button in self.buttons.items():
            button.add_class(f"sf-{'rate' if self.kind == 'ratings' else 'choice'}-{value}")
            button.on_click(lambda _b, v=value: self.answer(v))
        self.skip_button = w.Button(description="Skip", icon="forward", tooltip="skip (key s)")
        self.undo_button = w.Button(description="Undo", icon="undo", tooltip="undo the last answer (key u)")
        self.skip_button.add_class("sf-skip")
        self.undo_button.add_class("sf-undo")
        self.skip_button.on_click(lambda _b: self.skip())
        self.undo_button.on_click(lambda _b: self.undo())
        self.comment = w.Textarea(placeholder="optional comment (saved with the next answer)",
                                  layout=w.Layout(width="520px", height="48px"))
        hint = "1-7 rate" if self.kind == "ratings" else "a / b choose, e equal"
        self.keys = w.Text(placeholder=f"keys: {hint}, s skip, u undo", continuous_update=True,
                           layout=w.Layout(width="260px"))
        self.keys.add_class("sf-keys")
        self.keys.observe(self._on_key, names="value")
        self.widget = w.VBox([
            w.HBox([self.title, self.progress_bar, self.progress_label]), self.guide, self.task_html,
            w.HBox(list(self.buttons.values())), legend,
            w.HBox([self.skip_button, self.undo_button, self.keys]), self.comment, self.message])
        self.widget.add_class(f"sf-annotator-{self.kind}")
        self._refresh(html.escape(" · ".join(self.session.notes)))

    # ---------------------------------------------------------------------------- actions
    def _run(self, action, *args) -> Any:
        from .lease import AnnotatorBusy

        try:
            result = action(*args)
        except (AnnotatorBusy, ValueError, RuntimeError) as e:
            self._refresh(f"<b style='color:#b00'>{html.escape(str(e))}</b>", escape=False)
            return None
        return result

    def answer(self, value) -> None:
        """What a click on a score / choice button does."""
        row = self._run(self.session.answer, value, self.comment.value)
        if row is not None:
            self.comment.value = ""
            self._refresh(f"saved: {html.escape(row['raw'].splitlines()[0])}")

    def skip(self) -> None:
        row = self._run(self.session.skip, self.comment.value)
        if row is not None:
            self.comment.value = ""
            self._refresh("skipped (stored as skipped; 'Revisit skipped' at the end)")

    def undo(self) -> None:
        row = self._run(self.session.undo)
        if row is None:
            self._refresh("nothing to undo")
            return
        self.comment.value = (row.get("meta") or {}).get("comment", "") or ""
        self._refresh(f"undone: {html.escape(str(row['raw']).splitlines()[0])} (deleted from the store; answer again)")

    def _on_key(self, change) -> None:
        text = change["new"]
        if not text:
            return
        key = text[-1].lower()
        self.keys.value = ""
        if key in KEYS[self.kind]:
            self.answer(KEYS[self.kind][key])
        elif key == "s":
            self.skip()
        elif key == "u":
            self.undo()
        else:
            self._refresh(f"key {html.escape(key)!s} does nothing here")

    def revisit_skipped(self) -> None:
        found = self.session.revisit_skipped()
        self._refresh("showing a skipped task again" if found else "no skipped task")

    def close(self) -> None:
        """Release this annotator (another kernel may open it now) and close the widget."""
        self.session.close()
        self.widget.close()

    # ---------------------------------------------------------------------------- view
    def _refresh(self, message: str = "", escape: bool = False) -> None:
        s = self.session
        p = s.progress()
        self.title.value = f"<b>{html.escape(s.judge)}</b> · {self.kind}"
        self.progress_bar.value = p["total"] - p["remaining"]
        self.progress_label.value = (f"{p['total'] - p['remaining']} / {p['total']} done "
                                     f"({p['answered']} answered, {p['skipped']} skipped)")
        task = s.current()
        if task is None:
            self.task_html.value = (f"<h4>All {p['total']} tasks done — thank you.</h4>"
                                    + ("<p>Some were skipped: call <code>annotator.revisit_skipped()</code> to "
                                       "answer them.</p>" if p["skipped"] else ""))
        elif self.kind == "ratings":
            self.task_html.value = _pre(task["text"])
        else:
            head = task["text"].split("\n\n### Output (a):")[0]
            self.task_html.value = (_pre(head) + "<table style='width:100%;table-layout:fixed'><tr>"
                                    f"<td style='vertical-align:top'><b>Output (a)</b>{_pre(task['output_a'])}</td>"
                                    f"<td style='vertical-align:top'><b>Output (b)</b>{_pre(task['output_b'])}</td>"
                                    "</tr></table>")
        for b in self.buttons.values():
            b.disabled = task is None
        self.skip_button.disabled = task is None
        self.message.value = html.escape(message) if escape else message

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"HumanAnnotator({self.session!r})"
