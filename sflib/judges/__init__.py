"""Judges by name: a config (``get_judge("gpt-4o-mini")``, ``"smollm2-llamacpp"``, ``"my_judge.yaml"``,
see :mod:`sflib.judges.config`) or a spec (``"openai:gpt-4o-mini"``, ``"local:smollm2"``,
``"recorded:a.csv,b.csv"``, ``"recorded"`` = the paper's vendored GPT-3.5 feedback).
Keyword options override the config (``get_judge("gpt-4o-mini", rpm=600)``).

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
from pathlib import Path
from typing import Any, Callable

from .base import Completion, Judge, Request

__all__ = ["Completion", "Judge", "Request", "get_judge", "build_judge", "register_judge", "known_judges"]

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
    "human": _lazy("..human.judge", "HumanJudge"),
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


#: keyword aliases accepted for config keys
_ALIASES = {"max_new_tokens": "max_tokens"}
_BUILTIN = ("openai", "local", "recorded")


def get_judge(spec: "str | Judge", **kwargs: Any) -> Judge:
    """A judge from a config name, a YAML path or a spec, or a :class:`Judge` passed through.

    ``kwargs`` named like config keys (``concurrency``, ``rpm``, ``tpm``, ``timeout``,
    ``temperature``, ``max_tokens``, ``top_p``, ...) override the config; others go to the judge's
    constructor (``api_key=``, ``base_url=``, ``batch_size=``, ...).
    """
    if isinstance(spec, Judge):
        if kwargs:
            raise TypeError(f"get_judge: options {sorted(kwargs)} given with an existing judge "
                            f"{spec.name!r}; set them when you create it")
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"get_judge expects a name like 'openai:gpt-4o-mini' or a Judge, "
                        f"got {type(spec).__name__}")
    prefix, sep, rest = spec.strip().partition(":")
    if sep and rest and prefix in _REGISTRY and prefix not in _BUILTIN:
        return _REGISTRY[prefix](rest, **kwargs)  # a provider added with register_judge
    if sep and not rest:
        raise ValueError(f"judge {spec!r}: expected '<provider>:<model>', e.g. 'openai:gpt-4o-mini', "
                         f"'local:smollm2' or 'recorded:<file>'; known providers: "
                         f"{', '.join(known_judges())}")
    if sep and prefix not in _REGISTRY and "/" not in prefix and "\\" not in prefix:
        raise ValueError(f"judge {spec!r}: unknown provider {prefix!r}; known providers: "
                         f"{', '.join(known_judges())} (add one with sflib.judges.register_judge)")
    from .config import resolve

    return build_judge(resolve("judge", spec), **kwargs)


def build_judge(cfg: dict, **kwargs: Any) -> Judge:
    """A judge from a resolved config (see :func:`sflib.judges.config.resolve`) and overrides."""
    from ..core import costs
    from .config import KEYS, api_key, apply_overrides, base_url

    kwargs = {_ALIASES.get(k, k): v for k, v in kwargs.items()}
    cfg = apply_overrides(cfg, {k: v for k, v in kwargs.items() if k in KEYS})
    extra = {k: v for k, v in kwargs.items() if k not in KEYS}
    provider = cfg["provider"]
    if provider == "openai":
        from .openai_judge import OpenAIJudge

        if "top_p" not in extra and cfg.get("top_p") is not None:
            extra["top_p"] = cfg["top_p"]
        if cfg.get("logprobs") and "logprobs" not in extra:   # logprob-weighted verdicts (sflib.feedback.logprobs)
            extra["logprobs"] = True
            extra["top_logprobs"] = cfg.get("top_logprobs") or 20
        extra.setdefault("base_url", base_url(cfg))
        if cfg.get("api_key_env"):
            extra.setdefault("api_key", api_key(cfg))
        elif extra["base_url"]:  # a local server that needs no key: never send OPENAI_API_KEY there
            from .openai_judge import DUMMY_KEY

            extra.setdefault("api_key", DUMMY_KEY)
        judge: Judge = OpenAIJudge(cfg["model"], concurrency=cfg["concurrency"], rpm=cfg["rpm"], tpm=cfg["tpm"],
                                   timeout=cfg["timeout"], max_retries=cfg["max_retries"],
                                   temperature=cfg["temperature"], max_tokens=cfg["max_tokens"], **extra)
        if cfg.get("structured_verdicts"):  # ask for the protocol's JSON schema (sflib.protocols.structured)
            from ..protocols.structured import wrap

            judge = wrap(judge, cfg["structured_verdicts"])
    elif provider == "local":
        from .local import LocalJudge

        judge = LocalJudge(cfg["model"], max_new_tokens=cfg["max_tokens"], batch_size=cfg["batch_size"],
                           device=cfg.get("device"), **extra)
    elif provider == "recorded":
        from .recorded import RecordedJudge

        files = cfg.get("files")
        if isinstance(files, str):
            files = [f.strip() for f in files.split(",") if f.strip()]
        if files:
            here = Path(cfg["source"]).parent if cfg.get("source", "shorthand") != "shorthand" else None
            files = [str(here / f) if here is not None and (here / f).exists() else f for f in files]
            judge = RecordedJudge(files, **extra)
        else:
            judge = RecordedJudge.vendored(**extra)
    else:
        judge = _REGISTRY[provider](cfg["model"], **extra)
    judge.template = cfg.get("template") or "v1"
    judge.config = cfg
    if provider == "openai" and cfg.get("source", "shorthand") != "shorthand" \
            and cfg.get("price_input_per_mtok") is not None and cfg.get("price_output_per_mtok") is not None:
        costs.register_price(judge.name, cfg["price_input_per_mtok"], cfg["price_output_per_mtok"])
    return judge
