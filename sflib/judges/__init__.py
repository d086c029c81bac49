"""Judges by name: ``get_judge("openai:gpt-4o-mini")``, ``"local:smollm2"``, ``"recorded:a.csv,b.csv"``.

A spec is ``<provider>:<rest>``. Built-in providers (imported only when used):

- ``openai:<model>``   -> ``OpenAIJudge(model, **kwargs)`` — any OpenAI-compatible endpoint
  (``base_url=`` or ``OPENAI_BASE_URL`` for vLLM / Ollama / llama.cpp / Azure);
- ``local:<model-or-alias>`` -> ``LocalJudge(model, **kwargs)`` — a ``transformers`` model;
- ``recorded:<file>[,<file>...]`` -> ``RecordedJudge([file, ...], **kwargs)`` — answers from
  previously recorded annotations.

Add a provider with ``register_judge("myprov", factory)`` where ``factory(rest, **kwargs)``
returns a :class:`Judge`; then ``get_judge("myprov:whatever")`` works everywhere a judge name is
accepted (notebook parameters, CLI).
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

from .base import Completion, Judge, Request

__all__ = ["Completion", "Judge", "Request", "get_judge", "register_judge", "known_judges"]

Factory = Callable[..., Judge]


def _lazy(module: str, cls: str, split_files: bool = False) -> Factory:
    def factory(rest: str, **kwargs: Any) -> Judge:
        klass = getattr(importlib.import_module(module, __name__), cls)
        if split_files:
            return klass([part.strip() for part in rest.split(",") if part.strip()], **kwargs)
        return klass(rest, **kwargs)

    factory.__doc__ = f"{module}.{cls}"
    return factory


_REGISTRY: dict[str, Factory] = {
    "openai": _lazy(".openai_judge", "OpenAIJudge"),
    "local": _lazy(".local", "LocalJudge"),
    "recorded": _lazy(".recorded", "RecordedJudge", split_files=True),
}


def register_judge(prefix: str, factory: Factory) -> None:
    """Make ``get_judge(f"{prefix}:<rest>")`` call ``factory(rest, **kwargs)``."""
    if not prefix or ":" in prefix:
        raise ValueError(f"judge prefix must be a non-empty name without ':', got {prefix!r}")
    if not callable(factory):
        raise TypeError(f"factory for judge prefix {prefix!r} must be callable")
    _REGISTRY[prefix] = factory


def known_judges() -> list[str]:
    """The registered provider prefixes."""
    return sorted(_REGISTRY)


def get_judge(spec: "str | Judge", **kwargs: Any) -> Judge:
    """A judge from a spec string (``"<provider>:<rest>"``) or a :class:`Judge` passed through."""
    if isinstance(spec, Judge):
        if kwargs:
            raise TypeError(f"get_judge: options {sorted(kwargs)} given with an existing judge "
                            f"{spec.name!r}; set them when you create it")
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"get_judge expects a name like 'openai:gpt-4o-mini' or a Judge, "
                        f"got {type(spec).__name__}")
    prefix, sep, rest = spec.strip().partition(":")
    if not sep or not rest:
        raise ValueError(f"judge {spec!r}: expected '<provider>:<model>', e.g. 'openai:gpt-4o-mini', "
                         f"'local:smollm2' or 'recorded:<file>'; known providers: "
                         f"{', '.join(known_judges())}")
    if prefix not in _REGISTRY:
        raise ValueError(f"judge {spec!r}: unknown provider {prefix!r}; known providers: "
                         f"{', '.join(known_judges())} (add one with sflib.judges.register_judge)")
    return _REGISTRY[prefix](rest, **kwargs)
