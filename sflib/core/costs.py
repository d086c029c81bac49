"""Token prices and cost accounting for judge runs.

Prices are USD per 1 million input (prompt) and output (completion) tokens. The built-in table
holds common OpenAI models at their published list prices (standard tier, checked 2025); prices
change, so check them and override where it matters:

- in code: ``costs.register_price("my-model", input_per_m=0.2, output_per_m=0.8)``;
- from a file: set ``SFLIB_PRICES=/path/prices.json`` with
  ``{"my-model": {"input_per_m": 0.2, "output_per_m": 0.8}}`` (or ``{"my-model": [0.2, 0.8]}``);
- in a judge config (``price_input_per_mtok`` / ``price_output_per_mtok``, see
  :mod:`sflib.judges.config`): registered for that judge's name when it is built.

A model is matched exactly, then by the longest known prefix (``gpt-4o-mini-2024-07-18`` ->
``gpt-4o-mini``). A ``provider:`` prefix is ignored, except that ``local:`` and ``recorded:``
judges cost nothing. An unknown model has cost ``None`` — never an error.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

#: model -> (USD per 1M input tokens, USD per 1M output tokens)
PRICES: dict[str, tuple[float, float]] = {
    "gpt-3.5-turbo": (0.50, 1.50),
    "gpt-4": (30.00, 60.00),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o1": (15.00, 60.00),
    "o1-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
}

#: judge providers that never cost money
FREE_PROVIDERS = {"local", "recorded"}

_user_prices: dict[str, tuple[float, float]] = {}
_file_cache: tuple[str, float, dict[str, tuple[float, float]]] | None = None


def register_price(model: str, input_per_m: float, output_per_m: float) -> None:
    """Add or override the price of ``model`` (USD per 1M input / output tokens)."""
    if input_per_m < 0 or output_per_m < 0:
        raise ValueError(f"prices must be >= 0, got {input_per_m}, {output_per_m} for {model!r}")
    _user_prices[model] = (float(input_per_m), float(output_per_m))


def _file_prices() -> dict[str, tuple[float, float]]:
    """Prices from the JSON file named by ``SFLIB_PRICES`` (re-read when the file changes)."""
    global _file_cache
    path = os.environ.get("SFLIB_PRICES")
    if not path:
        return {}
    p = Path(path)
    try:
        mtime = p.stat().st_mtime
    except OSError as e:
        raise FileNotFoundError(f"SFLIB_PRICES={path}: cannot read the price file ({e})") from e
    if _file_cache and _file_cache[0] == path and _file_cache[1] == mtime:
        return _file_cache[2]
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"SFLIB_PRICES={path}: not valid JSON ({e})") from e
    if not isinstance(raw, dict):
        raise ValueError(f"SFLIB_PRICES={path}: expected an object {{model: prices}}")
    table = {}
    for model, value in raw.items():
        if isinstance(value, dict) and {"input_per_m", "output_per_m"} <= set(value):
            table[model] = (float(value["input_per_m"]), float(value["output_per_m"]))
        elif isinstance(value, (list, tuple)) and len(value) == 2:
            table[model] = (float(value[0]), float(value[1]))
        else:
            raise ValueError(f"SFLIB_PRICES={path}, model {model!r}: expected "
                             '{"input_per_m": x, "output_per_m": y} or [x, y]')
    _file_cache = (path, mtime, table)
    return table


def price(model: str) -> tuple[float, float] | None:
    """``(input_per_m, output_per_m)`` for ``model`` or ``None`` when unknown."""
    provider, _, name = model.partition(":")
    if not name:
        provider, name = "", model
    if provider in FREE_PROVIDERS:
        return (0.0, 0.0)
    candidates = [model, name] if provider else [model]
    # user prices win over the file, which wins over the built-in table
    tables = (_user_prices, _file_prices(), PRICES)
    for table in tables:
        for candidate in candidates:
            if candidate in table:
                return table[candidate]
    for table in tables:
        matches = [m for m in table for c in candidates if c.startswith(m)]
        if matches:
            return table[max(matches, key=len)]
    return None


def cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD cost of a number of tokens on ``model``; ``None`` when the model's price is unknown."""
    p = price(model)
    if p is None:
        return None
    return (prompt_tokens * p[0] + completion_tokens * p[1]) / 1e6
