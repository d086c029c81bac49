"""AlpacaEval's files: ``model_outputs`` (``[{instruction, output, generator, dataset}]``) and the
pairwise ``annotations.json`` an AlpacaEval run writes (read as rankings)."""
from __future__ import annotations

import math
import os

import pandas as pd

from ..core import data as d
from . import checks as c
from .sniff import Raw

# ----------------------------------------------------------------------------- AlpacaEval

def read_model_outputs(path: os.PathLike | str, *, split: str | None = None, allow_empty: bool = False) -> pd.DataFrame:
    """AlpacaEval's ``model_outputs`` layout ``[{instruction, output, generator, dataset}]`` (``generator``
    and ``dataset`` optional, empty when absent; an empty output is kept: evaluation counts it)."""
    cols = d.MODEL_OUTPUT_COLUMNS + ["instruction_id"]
    raw = c.load_kind("model_outputs", path, split, allow_empty, cols)
    if isinstance(raw, pd.DataFrame):
        return raw
    df = c.rename(raw, "model_outputs")
    c.require(raw, df, ["instruction", "output"])
    c.require_text(raw, df, "instruction")
    c.require_text(raw, df, "output", allow_empty=True)
    c.optional_text(df, "generator")
    c.optional_text(df, "dataset")
    x = [d.clean_input(v) for v in df["input"]] if "input" in df else [""] * len(df)
    df["instruction_id"] = [d.make_id(i, v) for i, v in zip(df["instruction"], x)]
    return c.order(df, cols, raw)


def _preference(raw: Raw, values: list) -> tuple[list, list]:
    """AlpacaEval preferences: 1 = output_1 (a), 2 = output_2 (b), 1.5 (or 0, identical outputs) = equal;
    a weighted preference in between goes to the nearer side; null = the annotator failed (invalid)."""
    decisions, prefs = [], []
    for i, v in enumerate(values):
        if c.blank(v):
            decisions.append(None)
            prefs.append(math.nan)
            continue
        try:
            p = float(v) if not isinstance(v, bool) else math.nan
        except (TypeError, ValueError):
            p = math.nan
        if math.isnan(p) or not (p == 0 or 1 <= p <= 2):
            raise raw.error(i, f"preference {v!r} is not 1 (output_1), 2 (output_2), 1.5 (tie) or in between",
                            "preference")
        decisions.append("equal" if p in (0, 1.5) else "a" if p < 1.5 else "b")
        prefs.append(p)
    return decisions, prefs


def preference_p_a(preference: float) -> float:
    """P(output_1 better) of an AlpacaEval preference: ``2 - preference`` (1 -> 1, 2 -> 0, 1.3 -> 0.7);
    0 (identical outputs) is a tie, 0.5. So ``1 - p_a = preference - 1``, the policy's share of the win
    in AlpacaEval's continuous win rate ``mean(preference - 1)`` (with 0 read as 1.5)."""
    if preference is None or math.isnan(preference):
        return math.nan
    return 0.5 if preference == 0 else 2.0 - float(preference)


def read_annotations(path: os.PathLike | str, *, split: str | None = None, allow_empty: bool = False) -> pd.DataFrame:
    """AlpacaEval's ``annotations.json`` as rankings: ``output_1`` -> ``response1`` (a, the reference),
    ``output_2`` -> ``response2`` (b, the policy), ``generator_1`` -> ``reference``, ``generator_2`` ->
    ``policy``, ``annotator`` -> ``judge``, ``preference`` 1 / 2 / 1.5 -> ``a`` / ``b`` / ``equal``
    (kept as ``preference``, and as ``p_a`` = :func:`preference_p_a` for soft verdicts, so a weighted
    preference such as 1.3 is not rounded; a failed annotation has no decision and ``valid`` false)."""
    front = d.RANKING_COLUMNS + ["reference", "policy", "judge", "preference", "p_a", "valid"]
    raw = c.load_kind("annotations", path, split, allow_empty, front)
    if isinstance(raw, pd.DataFrame):
        return raw
    df = c.rename(raw, "annotations")
    c.require(raw, df, ["instruction", "response1", "response2", "preference"])
    c.require_text(raw, df, "instruction")
    for col in ("response1", "response2"):
        c.require_text(raw, df, col, allow_empty=True)
    c.clean_inputs(raw, df)
    decisions, df["preference"] = _preference(raw, df["preference"].tolist())
    df["decision"] = decisions
    df["p_a"] = [preference_p_a(p) for p in df["preference"]]
    df["valid"] = [dec is not None for dec in decisions]
    for col in ("reference", "policy", "judge"):
        c.optional_text(df, col)
    return c.order(d.add_ids(df), front, raw)
