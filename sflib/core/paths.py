"""Where things live: the repository root, the vendored data, outputs, figures and caches.

Every location can be overridden by an environment variable so a user can point the notebooks at
their own folders without editing code:

- ``SFLIB_ROOT``     repository root (default: the folder above this package)
- ``SFLIB_OUTPUTS``  run outputs: annotation store, generated files (default: ``<root>/outputs``)
- ``SFLIB_FIGURES``  figures (default: ``<root>/figures``)
- ``SFLIB_CACHE``    converted model weights (default: ``~/.cache/sparse-feedback``)
"""
from __future__ import annotations

import os
from pathlib import Path


def root() -> Path:
    return Path(os.environ.get("SFLIB_ROOT", Path(__file__).resolve().parents[2]))


def data_dir() -> Path:
    return root() / "data"


def outputs_dir() -> Path:
    return Path(os.environ.get("SFLIB_OUTPUTS", root() / "outputs"))


def figures_dir() -> Path:
    return Path(os.environ.get("SFLIB_FIGURES", root() / "figures"))


def cache_dir() -> Path:
    return Path(os.environ.get("SFLIB_CACHE", Path.home() / ".cache" / "sparse-feedback"))


def templates_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "templates"


def feedback_path(kind: str) -> Path:
    """Where notebooks 02 / 03 save the feedback they acquired and 04 / 05 read it with a real judge:
    ``<outputs>/feedback/ratings.jsonl`` or ``rankings.jsonl``."""
    if kind not in ("ratings", "rankings"):
        raise ValueError(f"kind must be 'ratings' or 'rankings', not {kind!r}")
    return outputs_dir() / "feedback" / f"{kind}.jsonl"
