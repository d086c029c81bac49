"""Structured verdicts: ask the judge for the protocol's JSON schema, fall back to free text visibly.

A judge file says ``structured_verdicts: <style>`` (:mod:`sflib.judges.config`); the judge is then wrapped
in :class:`StructuredJudge`, which adds to every request that has a schema (a protocol's request carries
``meta["schema"]``; stages 02/03/07's rating and ranking requests get the ``rating-1-7`` /
``pairwise-3way`` schema) the field its server understands:

- ``json_schema`` (or ``true``): OpenAI structured outputs, ``response_format={"type": "json_schema",
  "json_schema": {"name", "schema", "strict": true}}`` (also llama.cpp's own ``llama-server``, vLLM);
- ``json_object``: ``response_format={"type": "json_object", "schema": ...}``, what llama-cpp-python's
  server (``python -m sflib.generation.serve_local``) turns into a grammar;
- ``guided_json``: vLLM's ``extra_body={"guided_json": schema}``.

When the server refuses the field (HTTP 400/422, or an error naming ``response_format`` /
``json_schema`` / ``grammar``), the refused requests are asked again as free text, read by the same
parser, and every later request of the run goes as free text; a warning says so once. Which format
each answer came in is recorded in the store's ``meta["verdict_format"]`` (``json_schema`` ...,
``text``, or ``text (server refused json_schema: <error>)``). The style is part of the cache key
(``params["structured_verdicts"]``), so free-text answers stored before are not reused as structured ones.
"""
from __future__ import annotations

import copy
import logging
import re
from functools import lru_cache
from typing import Iterable, Iterator

from ..judges.base import Completion, Judge, Request

log = logging.getLogger(__name__)

STYLES = ("json_schema", "json_object", "guided_json")
_REFUSAL = re.compile(r"^(?:BadRequestError 400|UnprocessableEntityError 422|NotFoundError 404)|response_format|"
                      r"json_schema|guided_json|grammar", re.I)
#: OpenAI's strict mode refuses these keywords; the parser checks what they would have
_NOT_STRICT = ("uniqueItems",)


def style_of(value) -> str | None:
    """The style a judge file's ``structured_verdicts`` names (``true`` = ``json_schema``), None for off."""
    if value in (None, False, "", "none", "off", "text"):
        return None
    if value is True:
        return "json_schema"
    if value not in STYLES:
        raise ValueError(f"structured_verdicts: expected true/false or one of {', '.join(STYLES)}, got {value!r}")
    return value


@lru_cache(maxsize=None)
def _builtin_schema(protocol: str) -> dict | None:
    from . import get_protocol

    return get_protocol(protocol).schema


def schema_for(request: Request) -> dict | None:
    """The schema a request asks for: ``meta["schema"]``, else the paper protocols' by ``meta["kind"]``."""
    meta = request.meta or {}
    if meta.get("schema"):
        return meta["schema"]
    kind = meta.get("kind")
    return _builtin_schema({"rating": "rating-1-7", "ranking": "pairwise-3way"}[kind]) \
        if kind in ("rating", "ranking") else None


def _strip(schema, keys):
    if isinstance(schema, dict):
        return {k: _strip(v, keys) for k, v in schema.items() if k not in keys}
    if isinstance(schema, list):
        return [_strip(v, keys) for v in schema]
    return schema


def request_params(schema: dict, style: str, name: str = "verdict") -> dict:
    """The API parameters that ask for ``schema`` in ``style`` (see the module notes)."""
    if style == "json_schema":
        return {"response_format": {"type": "json_schema", "json_schema": {
            "name": re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "verdict",
            "schema": _strip(schema, _NOT_STRICT), "strict": True}}}
    if style == "json_object":
        return {"response_format": {"type": "json_object", "schema": copy.deepcopy(schema)}}
    if style == "guided_json":
        return {"extra_body": {"guided_json": copy.deepcopy(schema)}}
    raise ValueError(f"unknown structured-verdict style {style!r}; one of {', '.join(STYLES)}")


def is_refusal(error: str | None) -> bool:
    """Whether a failed request's error reads as the server refusing the structured-output field."""
    return bool(error) and bool(_REFUSAL.search(str(error)))


class StructuredJudge(Judge):
    """A judge that asks for JSON-schema-constrained answers (see the module notes); everything else is
    the wrapped judge's."""

    def __init__(self, inner: Judge, style: str):
        self.inner, self.style = inner, style_of(style) or "json_schema"
        self.name, self.model = inner.name, inner.model
        self.params = {**(inner.params or {}), "structured_verdicts": self.style}
        self.concurrency = inner.concurrency
        self.reports_starts, self.supports_n = inner.reports_starts, inner.supports_n
        self.answers_on_retry = inner.answers_on_retry
        self.refused: str | None = None    # the server's refusal, once it refused
        self.counts = {"structured": 0, "text": 0, "fallback": 0}

    def __getattr__(self, name):  # check(), base_url, ... of the wrapped judge
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"StructuredJudge({self.inner!r}, style={self.style!r})"

    def _prepare(self, request: Request) -> Request:
        schema = schema_for(request)
        if schema is None or self.refused:
            request.meta["verdict_format"] = "text" if schema is None or not self.refused else \
                f"text (server refused {self.style}: {self.refused[:120]})"
            self.counts["text"] += 1
            return request
        request.meta["verdict_format"] = self.style
        self.counts["structured"] += 1
        name = str(request.meta.get("protocol") or request.meta.get("kind") or "verdict")
        return Request(messages=request.messages, meta=request.meta,
                       params={**(request.params or {}), **request_params(schema, self.style, name)})

    def complete(self, requests: Iterable[Request], on_start=None) -> Iterator[tuple[int, Completion]]:
        requests = list(requests)
        sent = [self._prepare(r) for r in requests]
        kwargs = {"on_start": on_start} if on_start is not None and self.inner.reports_starts else {}
        refused: list[int] = []
        for index, completion in self.inner.complete(sent, **kwargs):
            if not completion.ok and sent[index] is not requests[index] and is_refusal(completion.error):
                if self.refused is None:
                    self.refused = str(completion.error)
                    log.warning("%s refused structured verdicts (%s): %s. Asking in free text instead, read by the "
                                "protocol's text parser; the store records verdict_format per answer.",
                                self.name, self.style, self.refused[:200])
                refused.append(index)
                continue
            yield index, completion
        if not refused:
            return
        note = f"text (server refused {self.style}: {str(self.refused)[:120]})"
        for i in refused:
            requests[i].meta["verdict_format"] = note
        self.counts["fallback"] += len(refused)
        plain = [Request(messages=requests[i].messages, meta=requests[i].meta, params=dict(requests[i].params or {}))
                 for i in refused]
        if kwargs:
            kwargs = {"on_start": lambda j: on_start(refused[j])}
        for j, completion in self.inner.complete(plain, **kwargs):
            yield refused[j], completion


def wrap(judge: Judge, value) -> Judge:
    """``judge`` wrapped in :class:`StructuredJudge` when ``value`` (a judge file's ``structured_verdicts``)
    turns them on, else ``judge`` itself."""
    style = style_of(value)
    return StructuredJudge(judge, style) if style else judge
