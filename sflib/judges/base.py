"""The judge interface: one request in, one completion out, never raising for a per-item failure.

Judges are pluggable by name (``sflib.judges.get_judge("openai:gpt-4o-mini")``,
``"local:smollm2"``, ``"recorded:<file>"``). A judge turns chat messages into text; *what* is asked
(templates) and how replies are read (parsing) live in ``sflib.feedback.ratings`` / ``sflib.feedback.rankings`` /
``sflib.feedback.parsing``, and caching, resuming and accounting live in ``sflib.feedback.store`` / ``sflib.feedback.annotate``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator


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
    #: themselves (see :func:`sflib.generation.generate.generate_openai`).
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
