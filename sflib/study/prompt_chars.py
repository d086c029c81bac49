"""How many characters a rendered judge prompt has, without rendering it (``study plan`` counts
125,000 of them at the paper's scale); exact, checked against rendering in tests/test_study_plan_speed.py."""
from __future__ import annotations

from functools import lru_cache

from ..core.prompts import load_template
from ..feedback.ratings import render_messages, task_block


def _msg_chars(messages: list[dict]) -> int:
    return sum(len(m["content"]) for m in messages)


class _Chars:
    """Characters of a rendered judge prompt without rendering it (the plan counts 125k of them): the
    template's own characters plus each field's, as :func:`render_messages` would give them."""

    def __init__(self, template: str):
        import string

        self.template = template
        system, user = (m["content"] for m in render_messages(template, **dict.fromkeys(self._names(template), "")))
        raw = load_template(template)
        names = [f for _, f, _, _ in string.Formatter().parse(raw) if f]
        self.counts = {n: names.count(n) for n in set(names)}
        self.last = names[-1] if names else None
        body = raw.strip()
        # exact when the user message starts with template text and ends with the last field (then only
        # that field's trailing blanks are stripped); otherwise every prompt is rendered
        self.fast = bool(names) and not body.startswith("{") and body.endswith("{" + self.last + "}")
        self.base = len(system) + len(raw.format(**dict.fromkeys(self.counts, "")).strip()) if self.fast else 0
        if self.fast:  # the blank field at the end let strip() eat the template's blanks before it: add them back
            self.base += len(raw[:raw.rindex("{" + self.last + "}")]) - len(raw[:raw.rindex("{" + self.last + "}")].rstrip())

    @staticmethod
    def _names(template: str) -> list[str]:
        import string

        return [f for _, f, _, _ in string.Formatter().parse(load_template(template)) if f]

    def __call__(self, **fields: str) -> int:
        last = fields.get(self.last, "")
        if not self.fast or not str(last).strip():
            return _msg_chars(render_messages(self.template, **fields))
        return (self.base + sum(self.counts[n] * len(v) for n, v in fields.items() if n in self.counts)
                - (len(last) - len(str(last).rstrip())))


@lru_cache(maxsize=16)
def _chars(template: str) -> _Chars:
    return _Chars(template)


def rating_chars(template: str, instruction: str, input: str, response: str) -> int:
    return _chars(template)(task=task_block(instruction, input), response=response)


def ranking_chars(template: str, instruction: str, input: str, first: str, second: str) -> int:
    return _chars(template)(task=task_block(instruction, input), output_a=first, output_b=second)
