"""Logprob-weighted ("soft") verdicts from a judge's token log-probabilities. Pure functions.

A provider asked for ``logprobs=True, top_logprobs=20`` returns, for every generated token, the
most likely alternatives and their log-probabilities (``Completion.logprobs`` =
``[[token, {alternative: logprob}], ...]``). At the *verdict position* — the first generated token
that is itself a verdict token — the alternatives give a distribution over verdicts:

- a rating: ``expected_score`` = sum of k * P(k) over the tokens "1".."7", renormalised over those
  seven (``" 5"`` and ``"5"`` count as the same token; alternatives outside 1..7 are ignored);
- a pair: ``p_first`` = P("a") / (P("a") + P("b")) at the position of the output label
  (``Output (a)`` -> the token ``a`` after ``(``), the probability that the output *shown first* wins.

:func:`position_corrected` combines the two orders of a pair: in order 12 response 1 is shown
first, in order 21 response 2 is, so ``p_a = (p_first_12 + (1 - p_first_21)) / 2`` is the
probability that response 1 (decision ``a``) is better, with the position bias averaged out.

Each reader returns ``(soft_value, summary)``: a small JSON-able summary (position, verdict token,
the verdict probabilities, the probability mass they cover) is what the store keeps — never the
whole payload. Without usable logprobs the soft value falls back to the text verdict (a score as a
float, a choice as 1.0 / 0.0) and the summary says why (``source: "text"`` and ``reason``).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

SCORES = tuple(str(k) for k in range(1, 8))
CHOICES = ("a", "b")


def _norm(token: str) -> str:
    return str(token).strip().strip("*_\"'").lower()


def verdict_distribution(alternatives: dict[str, float], labels: Iterable[str]) -> dict[str, float]:
    """``{label: probability}`` summed over the alternatives that normalise to each label
    (not renormalised; labels with no alternative get 0)."""
    labels = tuple(labels)
    out = {label: 0.0 for label in labels}
    for token, logprob in alternatives.items():
        label = _norm(token)
        if label in out and logprob is not None and math.isfinite(logprob):
            out[label] += math.exp(logprob)
    return out


def find_position(tokens: list, labels: Iterable[str], after: str | None = None) -> int | None:
    """Index of the first generated token that is one of ``labels`` (normalised); with ``after``,
    prefer the first such token whose previous token ends with ``after`` (e.g. ``"("``)."""
    labels = set(labels)
    hits = [i for i, item in enumerate(tokens) if item and _norm(item[0]) in labels]
    if not hits:
        return None
    if after is not None:
        for i in hits:
            previous = str(tokens[i - 1][0]) if i > 0 else ""
            if previous.rstrip().endswith(after):
                return i
    return hits[0]


def _summary(position: int, token: str, probs: dict[str, float]) -> dict:
    mass = sum(probs.values())
    return {"source": "logprobs", "position": position, "token": token,
            "probs": {k: round(v / mass, 6) for k, v in probs.items()}, "mass": round(mass, 6)}


def _fallback(hard: Any, reason: str, as_soft: Callable[[Any], float | None]) -> tuple[float | None, dict]:
    return as_soft(hard), {"source": "text", "reason": reason}


def expected_score(logprobs: list | None, hard: Any = None) -> tuple[float | None, dict]:
    """A rating's expected score over "1".."7" at the score position (see the module docstring).

    ``hard``: the score parsed from the text, used when there are no usable logprobs."""
    def as_soft(value):
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    if not logprobs:
        return _fallback(hard, "provider returned no logprobs", as_soft)
    i = find_position(logprobs, SCORES)
    if i is None:
        return _fallback(hard, "no score token among the generated tokens", as_soft)
    probs = verdict_distribution(logprobs[i][1], SCORES)
    mass = sum(probs.values())
    if mass <= 0:
        return _fallback(hard, "no score alternatives at the score position", as_soft)
    value = sum(int(k) * p for k, p in probs.items()) / mass
    return value, _summary(i, str(logprobs[i][0]), probs)


def p_first(logprobs: list | None, hard: Any = None) -> tuple[float | None, dict]:
    """P(the output shown first, "(a)", is better) at the label position of one order."""
    def as_soft(value):
        return {"a": 1.0, "b": 0.0}.get(value)

    if not logprobs:
        return _fallback(hard, "provider returned no logprobs", as_soft)
    i = find_position(logprobs, CHOICES, after="(")
    if i is None:
        return _fallback(hard, "no (a)/(b) token among the generated tokens", as_soft)
    probs = verdict_distribution(logprobs[i][1], CHOICES)
    mass = sum(probs.values())
    if mass <= 0:
        return _fallback(hard, "no a/b alternatives at the label position", as_soft)
    return probs["a"] / mass, _summary(i, str(logprobs[i][0]), probs)


def position_corrected(p_first_12: float | None, p_first_21: float | None) -> float | None:
    """P(response 1 is better) from both orders: ``(p12 + (1 - p21)) / 2``; one order alone when
    the other is missing (NaN/None); None when both are."""
    def ok(x):
        return x is not None and not (isinstance(x, float) and math.isnan(x))

    if ok(p_first_12) and ok(p_first_21):
        return (float(p_first_12) + 1.0 - float(p_first_21)) / 2.0
    if ok(p_first_12):
        return float(p_first_12)
    if ok(p_first_21):
        return 1.0 - float(p_first_21)
    return None


def combine_orders(p12: Iterable, p21: Iterable | None) -> list[float]:
    """:func:`position_corrected` element-wise (``p21=None``: order 12 only); NaN where neither."""
    p12 = list(p12)
    p21 = [None] * len(p12) if p21 is None else list(p21)
    return [float("nan") if v is None else v for v in map(position_corrected, p12, p21)]


def reader_for(parse: Callable) -> Callable | None:
    """The soft reader that goes with a parser: :func:`expected_score` for
    :func:`sflib.feedback.parsing.parse_score`, :func:`p_first` for :func:`sflib.feedback.parsing.parse_choice`."""
    from . import parsing

    return {parsing.parse_score: expected_score, parsing.parse_choice: p_first}.get(parse)
