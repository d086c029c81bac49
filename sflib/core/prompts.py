"""The Alpaca-style prompt shared by policy sampling, reward-model training and scoring.

The template text lives in ``sflib/templates/alpaca_*.txt``. ``PROMPT_FORMAT`` names the format
so a reward model can record which one it was trained with and refuse to score with another.
"""
from __future__ import annotations

from functools import lru_cache

from .data import clean_input
from .paths import templates_dir

PROMPT_FORMAT = "alpaca-v1"


@lru_cache(maxsize=None)
def load_template(name: str) -> str:
    """Read ``sflib/templates/<name>`` (with or without a ``.txt`` suffix)."""
    path = templates_dir() / (name if "." in name else f"{name}.txt")
    if not path.exists():
        raise FileNotFoundError(f"prompt template {path} does not exist")
    return path.read_text(encoding="utf-8")


def alpaca_prompt(instruction: str, input: object = "") -> str:
    """The Alpaca prompt for an instruction, with the input section only when the input is non-empty."""
    inp = clean_input(input)
    if inp:
        return load_template("alpaca_with_input").format(instruction=instruction, input=inp)
    return load_template("alpaca_no_input").format(instruction=instruction)
