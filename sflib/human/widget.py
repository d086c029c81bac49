"""The annotator widget: rate 1–7 or choose a / b / equal, with skip, undo, revisit skipped and a comment.

``HumanAnnotator(items, annotator="alice", store=..., kind="ratings")`` then display ``.widget``.
Every answer goes through :class:`~sflib.human.session.AnnotationSession`, which writes it to the
store before the next task is shown.

The screen (:class:`AnnotationPanel`, an anywidget: ``panel.js`` / ``panel.css`` beside this file) keeps
the text being judged in view: a one-line header with the progress, the guide ("How to judge", folded), the
instruction and input in a compact block that folds away, the response — or the two responses side by
side — in the middle, and the buttons, Skip / Undo / Revisit skipped, the keys box and the comment fixed
below it.

Keys: click once into the keys box, then ``1``–``7`` rate, ``a`` / ``b`` / ``e`` (or ``=``) choose,
``s`` skips, ``u`` undoes (again and again, back through everything this annotator answered in this item
list, also before a restart), ``r`` shows a skipped task again. Every key press and button click is
queued in the browser and sent one at a time with the token of the task on screen; the next is sent
once the kernel has answered and the new task is drawn. So a burst of keys is applied in order, none is
dropped, and none answers a task that was never on screen. Each answer's ``latency_s`` is measured in the
browser from when its task was drawn with the panel in view (not from when the widget was made).

Elements carry CSS classes (``sf-rate-5``, ``sf-choice-a``, ``sf-skip``, ``sf-undo``, ``sf-revisit``,
``sf-keys``, ``sf-comment``, ``sf-progress``, ``sf-message``, ``sf-response-text``) so a browser test can
find them.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from .lease import AnnotatorBusy
from .session import CHOICES, SCORES, AnnotationSession, instructions

HERE = Path(__file__).resolve().parent
KEYS = {"ratings": {str(s): s for s in SCORES},
        "rankings": {"a": "a", "b": "b", "e": "equal", "=": "equal"}}
SKIP, UNDO, REVISIT = "s", "u", "r"
SCORE_LABELS = {1: "terrible", 2: "very poor", 3: "poor", 4: "acceptable", 5: "good", 6: "very good", 7: "perfect"}
LEGEND = {"ratings": "1 = terrible: useless, wrong or harmful · 4 = acceptable, with clear problems · "
                     "7 = perfect: cannot be improved",
          "rankings": "the order of the two outputs says nothing about their quality"}
CHOICE_LABELS = {"a": "Output (a) is better (a)", "b": "Output (b) is better (b)", "equal": "Equal (e)"}


def _buttons(kind: str) -> list[dict]:
    if kind == "ratings":
        return [{"key": str(s), "label": str(s), "cls": f"sf-rate-{s}", "tooltip": f"{s} = {SCORE_LABELS[s]} (key {s})"}
                for s in SCORES]
    keys = {"a": "a", "b": "b", "equal": "e"}
    return [{"key": keys[c], "label": CHOICE_LABELS[c], "cls": f"sf-choice-{c}", "tooltip": CHOICE_LABELS[c]}
            for c in CHOICES]


class AnnotationPanel(anywidget.AnyWidget):
    """The browser side of :class:`HumanAnnotator` (what it shows is set from Python)."""

    _esm = HERE / "panel.js"
    _css = HERE / "panel.css"
    kind = traitlets.Unicode("ratings").tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    guide = traitlets.Unicode("").tag(sync=True)
    legend = traitlets.Unicode("").tag(sync=True)
    buttons = traitlets.List([]).tag(sync=True)
    task = traitlets.Dict({}).tag(sync=True)
    progress = traitlets.Dict({}).tag(sync=True)
    message = traitlets.Dict({}).tag(sync=True)
    comment = traitlets.Dict({}).tag(sync=True)
    done_text = traitlets.Unicode("").tag(sync=True)


class HumanAnnotator:
    """A notebook widget for one annotator; ``.widget`` is what to display, ``.session`` the engine.

    Arguments as :class:`~sflib.human.session.AnnotationSession`. Opening an annotator that another
    live kernel holds raises :class:`~sflib.human.lease.AnnotatorBusy` with the way out; a bad name
    raises ``ValueError`` saying which characters are wrong.

    From Python (and in tests) :meth:`press` does what a key press or a click in the browser does.
    """

    def __init__(self, items, annotator: str, store: Any = None, kind: str = "ratings", **session_kwargs):
        import ipywidgets as w

        self.session = AnnotationSession(items, annotator, store, kind, **session_kwargs)
        self.kind = self.session.kind
        self._tokens = itertools.count(1)
        self.token = ""
        self.panel = AnnotationPanel(kind=self.kind, guide=instructions(self.kind), legend=LEGEND[self.kind],
                                     buttons=_buttons(self.kind), title=self.session.judge)
        self.panel.on_msg(self._on_msg)
        # a VBox around the panel: notebooks show it as "VBox(...)", the composed layout nbcheck expects
        self.widget = w.VBox([self.panel])
        self.widget.add_class(f"sf-annotator-box-{self.kind}")
        self._show(" · ".join(self.session.notes))

    # ---------------------------------------------------------------------------- the browser's messages
    def _on_msg(self, _widget, content, _buffers) -> None:
        if not isinstance(content, dict) or content.get("type") != "key":
            return
        try:
            self.press(str(content.get("key", "")), token=content.get("token"), latency_s=content.get("latency_s"),
                       comment=content.get("comment"))
        finally:  # always answer, so the browser sends the next queued key
            self.panel.send({"type": "ack", "seq": content.get("seq"), "token": self.token})

    def press(self, key: str, *, token: str | None = None, latency_s: float | None = None,
              comment: str | None = None) -> None:
        """What one key press (or the click on the button of that key) does.

        ``token``: the task the browser had on screen; a key meant for another task than the one now
        shown is not applied (it is reported). ``latency_s``: seconds that task was on screen (the
        session's own clock when None). ``comment``: the comment box's text.
        """
        key = (key or "").lower()
        self._typed_comment = comment  # what the comment box held (not sent back: the box may have changed since)
        if token is not None and token != self.token and key not in (UNDO, REVISIT):
            self._show(f"key {key!r} not applied: it was pressed for a task that is no longer on screen", "error")
            return
        if key in KEYS[self.kind]:
            self.answer(KEYS[self.kind][key], latency_s=latency_s)
        elif key == SKIP:
            self.skip(latency_s=latency_s)
        elif key == UNDO:
            self.undo()
        elif key == REVISIT:
            self.revisit_skipped()
        else:
            keys = "1-7" if self.kind == "ratings" else "a, b, e"
            self._show(f"key {key!r} does nothing here (use {keys}; s skip, u undo, r revisit skipped)")

    # ---------------------------------------------------------------------------- actions
    def _run(self, action, *args, **kwargs) -> tuple[bool, Any]:
        """``(True, result)``, or ``(False, None)`` after showing the error (e.g. the annotator was taken over)."""
        try:
            return True, action(*args, **kwargs)
        except (AnnotatorBusy, ValueError, RuntimeError) as e:
            self._show(str(e), "error")
            return False, None

    def _label(self, row: dict) -> str:
        """``task 3 of 15 (item 1a2b3c4d)``: which item a message is about."""
        task = (str(row.get("item_id", "")), str(row.get("order", "")))
        n = self.session.queue.index(task) + 1 if task in self.session.queue else "?"
        order = f", order {task[1]}" if task[1] else ""
        return f"task {n} of {len(self.session.queue)} (item {task[0][:12]}{order})"

    def _comment(self) -> str:
        typed = getattr(self, "_typed_comment", None)
        return str(typed if typed is not None else self.panel.comment.get("text", "") or "")

    def _set_comment(self, text: str) -> None:
        self.panel.comment = {"text": text, "n": self.panel.comment.get("n", 0) + 1}

    def answer(self, value, latency_s: float | None = None) -> None:
        """Record ``value`` for the task on screen (a score 1–7, or ``a`` / ``b`` / ``equal``)."""
        ok, row = self._run(self.session.answer, value, self._comment(), latency_s=latency_s)
        if ok:
            self._set_comment("")
            self._show(f"saved {self._label(row)}: {row['raw'].splitlines()[0]}")

    def skip(self, latency_s: float | None = None) -> None:
        ok, row = self._run(self.session.skip, self._comment(), latency_s=latency_s)
        if ok:
            self._set_comment("")
            self._show(f"skipped {self._label(row)} (stored as skipped; Revisit skipped, key r, shows it again)")

    def undo(self) -> None:
        ok, row = self._run(self.session.undo)
        if not ok:
            return
        if row is None:
            self._show("nothing to undo: no answer of yours in this item list")
            return
        self._set_comment((row.get("meta") or {}).get("comment", "") or "")
        self._show(f"undone {self._label(row)}: {str(row['raw']).splitlines()[0]} deleted from the store; "
                   "answer it again")

    def revisit_skipped(self) -> None:
        ok, found = self._run(self.session.revisit_skipped)
        if not ok:
            return
        if found:
            task = self.session.current()
            self._show(f"showing skipped {self._label(task)} again: your answer replaces the skip")
        else:
            self._show("no skipped task to revisit")

    def close(self) -> None:
        """Release this annotator (another kernel may open it now) and close the widget."""
        self.session.close()
        self.panel.close()
        self.widget.close()

    # ---------------------------------------------------------------------------- view
    def _show(self, message: str = "", level: str = "info") -> None:
        s = self.session
        p = s.progress()
        self.panel.progress = p
        task = s.current()
        key = None if task is None else (task["item_id"], task["order"], task["position"])
        if key != getattr(self, "_shown_key", None) or not self.token:
            self.token = "" if task is None else f"t{next(self._tokens)}"
            self._shown_key = key
        if task is None:
            self.panel.done_text = (f"All {p['total']} tasks done — thank you."
                                    + (f"\n{p['skipped']} skipped: press Revisit skipped (key r) to answer them."
                                       if p["skipped"] else ""))
            self.panel.task = {}
        else:
            fields = ("item_id", "order", "instruction", "input", "response", "output_a", "output_b")
            self.panel.task = {**{f: str(task.get(f, "") or "") for f in fields}, "token": self.token,
                               "position": int(task["position"]), "total": p["total"],
                               "previous": None if task["previous"] is None else str(task["previous"])}
        self.panel.message = {"text": message, "level": level}

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"HumanAnnotator({self.session!r})"
