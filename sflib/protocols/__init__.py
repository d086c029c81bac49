"""Feedback protocols as pluggable parts: one YAML file + one small class each (see :mod:`.base`).

Shipped (``sflib/configs/protocols/``): ``rating-1-7`` and ``pairwise-3way`` (the paper's, through
:func:`sflib.feedback.ratings.rate` / :func:`sflib.feedback.rankings.rank`, unchanged), ``pairwise-5way``
(preference with strength), ``listwise-k`` (rank all k responses in one call) and ``rubric``
(per-aspect 1–5 scores). :func:`get_protocol` finds a name in ``./protocols/``, then in the
``protocols/`` folder beside a loaded study file, then among the shipped files; a path to a
``.yaml`` file works too. Your own protocol: a file beside your study naming a built-in ``class``
(with your template, schema, aspects) or ``class: mymodule:MyProtocol`` (a :class:`Protocol`
subclass importable from your ``PYTHONPATH``). See docs/protocols.md.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from .base import PAIR_COLUMNS, Protocol, ProtocolError, calls_for
from .listwise import Listwise, parse_ranking
from .pairwise import Pairwise3Way, Pairwise5Way, parse_preference
from .pointwise import Rating, Rubric, parse_rating

__all__ = ["CLASSES", "PAIR_COLUMNS", "Protocol", "ProtocolError", "calls_for", "get_protocol", "known_protocols",
           "load_protocol", "parse_preference", "parse_ranking", "parse_rating", "shipped_dir"]

#: ``class:`` keys of the built-in protocol classes
CLASSES: dict[str, type[Protocol]] = {"rating": Rating, "pairwise-3way": Pairwise3Way, "pairwise-5way": Pairwise5Way,
                                      "listwise": Listwise, "rubric": Rubric}
_KEYS = {"name", "class", "description", "template", "schema", "calls", "reply_tokens", "version", "aspects",
         "scale", "both_orders"}


def shipped_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "configs" / "protocols"


def _folders() -> list[Path]:
    from ..judges.config import _STUDY_FOLDERS

    return [Path.cwd() / "protocols", *(f / "protocols" for f in reversed(_STUDY_FOLDERS)), shipped_dir()]


def known_protocols() -> list[str]:
    """Protocol names found in ``./protocols/``, beside loaded studies and among the shipped files."""
    return sorted({p.stem for f in _folders() if f.is_dir() for p in f.glob("*.yaml")})


def _class(key: str, source: str) -> type[Protocol]:
    if key in CLASSES:
        return CLASSES[key]
    module, sep, name = key.partition(":")
    if not sep:
        raise ProtocolError(f"{source}: class: unknown protocol class {key!r}; built-in: {', '.join(CLASSES)}, "
                            "or 'module:Class' for your own")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ProtocolError(f"{source}: class: cannot import {key!r} ({e})") from None
    if not (isinstance(cls, type) and issubclass(cls, Protocol)):
        raise ProtocolError(f"{source}: class: {key!r} is not a sflib.protocols.Protocol subclass")
    return cls


def load_protocol(path: str | Path) -> Protocol:
    """A protocol from its YAML file; :class:`ProtocolError` naming the file and the key otherwise."""
    import yaml

    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ProtocolError(f"{path}: cannot read the protocol file ({e})") from None
    if not isinstance(spec, dict):
        raise ProtocolError(f"{path}: expected a mapping of settings")
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise ProtocolError(f"{path}: {unknown[0]}: unknown key (known: {', '.join(sorted(_KEYS))})")
    for key in ("class", "template"):
        if key not in spec:
            raise ProtocolError(f"{path}: {key}: missing")
    spec.setdefault("name", path.stem)
    try:
        return _class(str(spec["class"]), str(path))(spec, path)
    except ProtocolError:
        raise
    except (TypeError, ValueError, SyntaxError) as e:
        raise ProtocolError(f"{path}: {e}") from None


def get_protocol(name: "str | Path | Protocol") -> Protocol:
    """A protocol by name (``rating-1-7``, ``listwise-k``, one in ``./protocols/`` or beside the study) or a
    ``.yaml`` path; a :class:`Protocol` is passed through."""
    if isinstance(name, Protocol):
        return name
    text = str(name).strip()
    if text.endswith((".yaml", ".yml")):
        p = Path(text).expanduser()
        if not p.is_absolute() and not p.exists():
            from ..judges.config import _STUDY_FOLDERS

            p = next((f / p for f in reversed(_STUDY_FOLDERS) if (f / p).exists()), p)
        if not p.exists():
            raise ProtocolError(f"protocol file {text} does not exist")
        return load_protocol(p)
    for folder in _folders():
        if (folder / f"{text}.yaml").is_file():
            return load_protocol(folder / f"{text}.yaml")
    raise ProtocolError(f"unknown protocol {text!r}; known: {', '.join(known_protocols())} (files in ./protocols/, "
                        f"beside the study in protocols/, or sflib/configs/protocols/), or a path to a .yaml file")
