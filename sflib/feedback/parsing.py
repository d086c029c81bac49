"""Robust reading of judge replies: a 1–7 score (ratings) or "Output (a)" / "Output (b)" (rankings).

Both parsers return ``(value, valid)``; an unreadable or ambiguous reply gives ``(None, False)`` and
the caller keeps the raw text (nothing is dropped). The prompts (``sflib/templates/rating_v1.txt``,
``ranking_v1.txt``) ask for the answer first, on its own line, but judges do not always comply, so:

:func:`parse_score`, in order of precedence
  1. an explicit final verdict anywhere: "Final score: 6", "Final rating - 5/7";
  2. a first line that is just a score: "6", "Score: 6", "**6**", "6/7", "Rating: 6 out of 7";
  3. the *last* labelled score in the text: "... Score: 6", "Rating: 6/7", "**6**", "6 out of 7",
     "I would rate it a 6", "I give this response a 5", "the score for this task is 7";
  4. a line that is nothing but a number;
  5. a reply starting with the score and a dash or colon: "6 - clear and correct" (not "1." — a list).
  Numbers outside 1–7 ("Score: 8", "9/10"), decimals ("6.5"), ranges ("Score: 5-6", "5 or 6": ambiguous)
  and unlabelled numbers ("3 facts") are never taken as the score.

:func:`parse_choice`, in order of precedence
  1. a first line naming exactly one output: "Output (a)", "(b)", "Output (B).", "output b";
  2. explicit verdicts anywhere, the last one wins: "Output (b) is better", "I prefer Output (a)",
     "Verdict: (b)", "the better response is Output (a)", and for the other output "Output (b) is
     worse than Output (a)", "Output (a) is less accurate";
  3. mentions of a single output only ("Output (b) answers the question.");
  otherwise — none, both without a verdict, or "neither"/"both equally" — invalid.
"""
from __future__ import annotations

import re

SCORE_MIN, SCORE_MAX = 1, 7

# A number that is a whole number token: not part of a longer number or a decimal, and not one end
# of a range ("5-6", "5 to 6", "5 or 6": an ambiguous answer is no answer).
_RANGE_AFTER = r"(?!\s*(?:[-\u2013\u2014]|to\b|or\b)\s*\d)"
_RANGE_BEFORE = r"(?<!\d[-\u2013\u2014])(?<!\d\s[-\u2013\u2014]\s)(?<!\d\sto\s)(?<!\d\sor\s)"
_NUM = r"(?<![\d.])" + _RANGE_BEFORE + r"(\d+)(?![\d]|\.\d)" + _RANGE_AFTER
_LABEL = r"(?:score|rating|grade|rate)"
_OUT_OF = r"(?:\s*(?:/|out\s+of|of)\s*(\d+))?"

_FINAL_RE = re.compile(
    rf"\b(?:final|overall)\s+{_LABEL}\s*(?:is|of|would\s+be|[:=\-])?\s*[*_\"'(\[]*\s*{_NUM}\s*[*_\"')\]]*{_OUT_OF}",
    re.I)
_LABELLED_RE = re.compile(
    rf"\b{_LABEL}\s*(?:is|of|would\s+be|[:=\-])?\s*[*_\"'(\[]*\s*{_NUM}\s*[*_\"')\]]*{_OUT_OF}", re.I)
# "the score for this task is 7", "my rating for the response would be 4", "Score for this response: 5"
_LABEL_PHRASE_RE = re.compile(
    rf"\b{_LABEL}\s+(?:for|of|to|i\s+would\s+give|i\s+give|i\s+would\s+assign)\b(?:\s+[a-z]+){{0,3}}?"
    rf"\s*(?:is|would\s+be|[:=])\s*[*_\"'(\[]*\s*{_NUM}\s*[*_\"')\]]*{_OUT_OF}", re.I)
_SLASH_RE = re.compile(rf"{_NUM}\s*(?:/|out\s+of)\s*(\d+)(?!\d)", re.I)
_BOLD_RE = re.compile(rf"(?:\*\*|__)\s*{_NUM}\s*(?:\*\*|__)")
_GIVE_RE = re.compile(
    rf"\b(?:give|giving|gave|rate|rating|rated|award|assign)\s+(?:it|this|the\s+response|this\s+response)?\s*"
    rf"(?:a|an|as|at)?\s+{_NUM}\b(?!\s*(?:/|out\s+of)\s*(?!7\b)\d)", re.I)
_BARE_LINE_RE = re.compile(
    rf"^\s*(?:[*_#>\s]*{_LABEL}\s*[:=\-]?)?\s*[*_\"'(\[]*\s*{_NUM}\s*[*_\"')\]]*{_OUT_OF}\s*[.!]?\s*$", re.I)

_LEADING_RE = re.compile(r"^\s*[*_]*([1-7])[*_]*\s*(?:[-–—:]|\)\s)(?!\s*\d)")


def _score_from(match: re.Match) -> int | None:
    """The score in a match if it is on the 1–7 scale (and any "out of" denominator is 7)."""
    value = int(match.group(1))
    denominator = match.group(2) if match.re.groups >= 2 else None
    if denominator is not None and int(denominator) != SCORE_MAX:
        return None
    return value if SCORE_MIN <= value <= SCORE_MAX else None


def _last_valid(matches) -> int | None:
    found = [s for s in (_score_from(m) for m in matches) if s is not None]
    return found[-1] if found else None


def _json_score(text: str) -> tuple[int | None, bool] | None:
    """A structured verdict ``{"score": N}`` (sflib.protocols.structured), read as JSON; None if the reply is not one."""
    import json

    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return None
    try:
        obj = json.loads(stripped)
    except ValueError:
        return None
    if not isinstance(obj, dict) or "score" not in obj:
        return None
    v = obj["score"]
    ok = isinstance(v, int) and not isinstance(v, bool) and SCORE_MIN <= v <= SCORE_MAX
    return (v, True) if ok else (None, False)


def parse_score(text: str | None) -> tuple[int | None, bool]:
    """The 1–7 score in a judge's rating reply, as ``(score, True)``, or ``(None, False)``.
    A structured verdict ``{"score": N}`` is read as JSON first.

    The module docstring's rules, run as doctests (``tests/test_lint.py``):

    >>> parse_score("Final rating - 5/7")                       # 1. an explicit final verdict
    (5, True)
    >>> parse_score("Score: 3 at first glance, but final score: 6")
    (6, True)
    >>> [parse_score(t)[0] for t in ("6", "Score: 6", "**6**", "6/7", "Rating: 6 out of 7")]  # 2. a first line
    [6, 6, 6, 6, 6]
    >>> parse_score("The answer is fine. Score: 6")              # 3. the last labelled score
    (6, True)
    >>> [parse_score(t)[0] for t in ("I would rate it a 6", "I give this response a 5",
    ...                              "the score for this task is 7")]
    [6, 5, 7]
    >>> parse_score("Good, concise.\\n5\\n")                      # 4. a line that is nothing but a number
    (5, True)
    >>> parse_score("6 - clear and correct")                     # 5. a leading score and a dash
    (6, True)
    >>> parse_score("1. first point")                            # a list, not a score
    (None, False)
    >>> [parse_score(t) for t in ("Score: 8", "9/10", "6.5", "Score: 5-6", "5 or 6", "3 facts")]
    [(None, False), (None, False), (None, False), (None, False), (None, False), (None, False)]
    >>> parse_score('{"score": 4}'), parse_score(""), parse_score(None)
    ((4, True), (None, False), (None, False))
    """
    if not text or not str(text).strip():
        return None, False
    text = str(text)
    structured = _json_score(text)
    if structured is not None:
        return structured
    # 1. an explicit final verdict
    score = _last_valid(_FINAL_RE.finditer(text))
    if score is not None:
        return score, True
    # 2. the first non-empty line is just a score (what the prompt asks for)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    m = _BARE_LINE_RE.match(lines[0])
    if m:
        score = _score_from(m)
        if score is not None:
            return score, True
    # 3. the last labelled score anywhere ("Score: 6", "6/7", "6 out of 7", "**6**", "I'd give it a 6")
    candidates = []
    for regex in (_LABELLED_RE, _LABEL_PHRASE_RE, _SLASH_RE, _BOLD_RE, _GIVE_RE):
        for match in regex.finditer(text):
            score = _score_from(match)
            if score is not None:
                candidates.append((match.start(), score))
    if candidates:
        return max(candidates)[1], True
    # 4. a line that is nothing but a number, anywhere
    for line in reversed(lines):
        m = _BARE_LINE_RE.match(line)
        if m and _score_from(m) is not None:
            return _score_from(m), True
    # 5. a reply that starts with the score and a dash or colon ("6 - good answer"); not "1." (a list)
    m = _LEADING_RE.match(lines[0])
    if m:
        return int(m.group(1)), True
    return None, False


# ----------------------------------------------------------------------------- rankings

# "Output (a)", "output(b)", "Output (B)", "output b", "Output A", "Response (a)"
_CHOICE = (r"(?:\b(?:output|response|answer)\s*\(\s*([ab])\s*\)"          # Output (a), response (b)
           r"|\boutput\s*([ab])(?=\s*(?:$|[.,:;!?)\]*\"'])|\s+(?:is|was|wins|would|seems|better|provides|gives|"
           r"answers|has|does|correctly|accurately)\b)"                           # output b, Output A is
           r"|\(\s*([ab])\s*\))")                                                 # (b)
_CHOICE_RE = re.compile(_CHOICE, re.I)
_VERDICT_BEFORE_RE = re.compile(
    r"(?:\b(?:prefer|preferred|choose|chose|choice|pick|picked|select|selected|verdict|answer|decision|winner|"
    r"better\s+(?:one|output|response|answer)\s+is|best\s+(?:one|output|response|answer)\s+is)\b"
    r"(?:\s+(?:is|would\s+be|goes\s+to|:))?\s*[:=\-]?\s*[*_\"'\[]*\s*)" + _CHOICE, re.I)
_VERDICT_AFTER_RE = re.compile(
    _CHOICE + r"\s*[*_\"'\]]*\s*(?:is|was|would\s+be)?\s*(?:clearly\s+|slightly\s+|much\s+|the\s+)?"
              r"(?:better|superior|preferred|preferable|the\s+better|wins|stronger|more\s+(?:accurate|helpful|coherent))\b",
    re.I)
# "Output (b) is worse than Output (a)", "Output (a) is less accurate": a verdict for the *other* output
_VERDICT_WORSE_RE = re.compile(
    _CHOICE + r"\s*[*_\"'\]]*\s*(?:is|was|would\s+be)?\s*(?:clearly\s+|slightly\s+|much\s+|the\s+)?"
              r"(?:worse|inferior|weaker|the\s+worse|less\s+(?:accurate|helpful|coherent|relevant|correct))\b",
    re.I)
_NEGATED_RE = re.compile(r"\b(?:neither|both\s+(?:are\s+)?equal(?:ly)?|tie\b|cannot\s+(?:choose|decide))", re.I)


_OTHER = {"a": "b", "b": "a"}


def _letters(matches) -> list[tuple[int, str]]:
    return [(m.start(), next(g for g in m.groups() if g).lower()) for m in matches]


def parse_choice(text: str | None) -> tuple[str | None, bool]:
    """The output a judge picked in a ranking reply: ``('a', True)``, ``('b', True)`` or ``(None, False)``.

    The module docstring's rules, run as doctests (``tests/test_lint.py``):

    >>> [parse_choice(t)[0] for t in ("Output (a)", "(b)", "Output (B).", "output b")]  # 1. the first line
    ['a', 'b', 'b', 'b']
    >>> [parse_choice(t)[0] for t in ("Output (b) is better", "I prefer Output (a)", "Verdict: (b)",
    ...                               "the better response is Output (a)")]             # 2. explicit verdicts
    ['b', 'a', 'b', 'a']
    >>> parse_choice("Output (b) is worse than Output (a)"), parse_choice("Output (a) is less accurate")
    (('a', True), ('b', True))
    >>> parse_choice("Output (b) answers the question.")        # 3. a single output mentioned
    ('b', True)
    >>> parse_choice("Neither output is good."), parse_choice("Both Output (a) and Output (b) are equally good.")
    ((None, False), (None, False))
    """
    if not text or not str(text).strip():
        return None, False
    text = str(text)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    # 1. a first line naming exactly one output (the format the prompt asks for)
    first = {c for _, c in _letters(_CHOICE_RE.finditer(lines[0]))}
    if len(first) == 1 and not _NEGATED_RE.search(lines[0]) and not _VERDICT_WORSE_RE.search(lines[0]):
        return first.pop(), True
    # 2. explicit verdicts anywhere: the last one wins
    verdicts = _letters(_VERDICT_BEFORE_RE.finditer(text)) + _letters(_VERDICT_AFTER_RE.finditer(text))
    verdicts += [(at, _OTHER[c]) for at, c in _letters(_VERDICT_WORSE_RE.finditer(text))]
    if verdicts:
        return max(verdicts)[1], True
    # 3. only one output mentioned at all, and no "neither"/"tie"
    mentioned = {c for _, c in _letters(_CHOICE_RE.finditer(text))}
    if len(mentioned) == 1 and not _NEGATED_RE.search(text) and not _VERDICT_WORSE_RE.search(text):
        return mentioned.pop(), True
    return None, False
