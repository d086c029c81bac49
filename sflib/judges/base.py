"""The judge interface: one request in, one completion out, never raising for a per-item failure.

Judges are pluggable by name (``sflib.judges.get_judge("openai:gpt-4o-mini")``,
``"local:smollm2"``, ``"recorded:<file>"``). A judge turns chat messages into text; *what* is asked
(templates) and how replies are read (parsing) live in ``sflib.feedback.ratings`` / ``sflib.feedback.rankings`` /
``sflib.feedback.parsing``, and caching, resuming and accounting live in ``sflib.feedback.store`` / ``sflib.feedback.annotate``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

#: what an API key or a bearer token looks like in an error text (OpenAI-style ``sk-...`` keys)
_SECRET_PATTERNS = [re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), re.compile(r"(?i)(bearer\s+)[^\s\"',]+")]


def scrub(text: Any, *secrets: str | None) -> str:
    """``text`` without API keys: each of ``secrets``, the ``*_API_KEY`` environment variables, and
    anything shaped like ``sk-...`` or ``Bearer ...`` become ``***``. For every error text the
    project prints or stores."""
    text = str(text)
    values = [s for s in secrets if s]
    values += [v for k, v in os.environ.items() if k.endswith("_API_KEY") and v]
    for value in sorted(set(values), key=len, reverse=True):
        if len(value) >= 8:
            text = text.replace(value, "***")
    text = _SECRET_PATTERNS[0].sub("sk-***", text)
    return _SECRET_PATTERNS[1].sub(lambda m: m.group(1) + "***", text)


def provider_error(error: Exception, *secrets: str | None) -> str:
    """One line naming why a provider refused a request (bad key, model not found, quota ...),
    from an ``openai`` API error (or anything with ``status_code`` / ``code`` / ``message``); keys
    scrubbed."""
    status = getattr(error, "status_code", None)
    code = getattr(error, "code", None)
    message = " ".join(str(getattr(error, "message", None) or error).split())[:300]
    if code == "insufficient_quota":
        cause = "quota exhausted (429 insufficient_quota): add credit to the account or use another key"
    elif status == 401:
        cause = "bad API key (401): check OPENAI_API_KEY (or the judge's api_key)"
    elif status == 403:
        cause = "permission denied (403): this key may not use this model or endpoint"
    elif status == 404:
        cause = "model or endpoint not found (404): check the model name and base_url"
    elif status == 400:
        cause = "bad request (400)"
    elif status is None:
        cause = f"no reply from the provider ({type(error).__name__})"
    else:
        cause = f"{type(error).__name__} {status}"
    return scrub(f"{cause}: {message}", *secrets)


@dataclass
class Request:
    """One thing to ask a judge.

    ``messages`` is an OpenAI-style chat (``[{"role": ..., "content": ...}]``). ``meta`` carries
    what a judge that does not call a model needs to answer (the recorded judge looks up
    ``meta["kind"]`` = "rating"/"ranking" and the texts in it); it is never sent to an API.
    """

    messages: list[dict[str, str]]
    meta: dict[str, Any] = field(default_factory=dict)
    #: extra API parameters for this request only (e.g. ``{"n": 5}``); an API judge sends them,
    #: others ignore them. Not part of the cache key: callers that use them key their rows
    #: themselves (see :func:`sflib.generation.sampling_openai.generate_openai`).
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Completion:
    """What came back for one request: ``text`` on success, ``error`` (a short message) on failure."""

    text: str | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    attempts: int = 1
    #: per generated token ``[token, {alternative: logprob, ...}]`` when the provider returned
    #: log-probabilities (``logprobs=True, top_logprobs=k``); None when it did not
    logprobs: list | None = None
    #: every choice's text when the request asked for ``n`` > 1 samples (``text`` is the first)
    texts: list[str] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


class Judge:
    """Base class. Subclasses set ``name`` (e.g. ``openai:gpt-4o-mini``), ``model`` and ``params``
    (decoding parameters; part of the cache key) and implement :meth:`complete`.
    """

    name: str = "judge"
    model: str = ""
    params: dict[str, Any] = {}
    #: how many requests the engine should keep in flight (1 for local judges)
    concurrency: int = 1
    #: True when :meth:`complete` accepts ``on_start=callback(index)``, called just before a
    #: request is sent (the engine records it as in flight; see :mod:`sflib.feedback.annotate`)
    reports_starts: bool = False
    #: True when :meth:`complete` accepts ``claim=callback(index) -> bool``, called before a request
    #: is sent; a False answer skips it (yields ``(index, None)``): another run on the same store
    #: asks it (see :mod:`sflib.feedback.claims`)
    supports_claims: bool = False
    #: True when a request's ``params={"n": k}`` can return k choices (``Completion.texts``)
    supports_n: bool = False
    #: False for judges that only replay answers (recorded feedback, humans): asking again cannot
    #: help, so an item they lack is "not recorded", not a failure a re-run retries
    answers_on_retry: bool = True

    def complete(self, requests: Iterable[Request]) -> Iterator[tuple[int, Completion]]:
        """Yield ``(index, completion)`` for every request, in any order, exactly once each.

        A failure of one request is a ``Completion(error=...)``, not an exception; an exception is
        reserved for configuration errors (no API key, unknown model) found before any request.
        """
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - optional
        pass
