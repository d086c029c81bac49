"""The checks every reader shares: mapped column names, required columns, text fields, input, order.

Each check raises one :class:`~sflib.core.data.DataError` naming the file, the row (as the user counts
it) and the field (as the file names it).
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

from ..core import data as d
from ..core.data import DataError
from .sniff import Raw, load

#: the original scripts' headerless CSV layouts
HEADERLESS = {"ratings": ["instruction", "input", "output", "score"],
              "rankings": ["instruction", "input", "output1", "output2", "feedback"]}
ALIASES = {  # kind -> {other name: our name}
    "instructions": {"context": "input", "category": "source", "dataset": "source"},
    "responses": {"context": "input", "output": "response", "category": "source"},
    "pairs": {"context": "input", "output1": "response1", "output2": "response2",
              "output_1": "response1", "output_2": "response2"},
    "ratings": {"context": "input", "output": "response"},
    "rankings": {"context": "input", "output1": "response1", "output2": "response2",
                 "output_1": "response1", "output_2": "response2", "feedback": "decision"},
    "model_outputs": {"response": "output"},
    "annotations": {"output_1": "response1", "output_2": "response2", "generator_1": "reference",
                    "generator_2": "policy", "annotator": "judge"},
}
INSTRUCTION_HINTS = ("prompt", "question", "query", "text")
#: columns that carry part of the task but have no place in (instruction, input): refused, never dropped
UNPLACED_CONTENT = ("system", "system_prompt", "history", "messages", "conversation", "conversations",
                    "passage", "document", "question", "prompt", "query")
_TASK_KINDS = ("instructions", "responses", "pairs", "ratings", "rankings")



# ----------------------------------------------------------------------------- checks

def is_null(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


_KNOWN = {"instruction", "input", "response", "response1", "response2", "score", "decision", "source", "generator",
          "dataset", "id", "valid", "judge", "preference"} | {k for a in ALIASES.values() for k in a}


def rename(raw: Raw, kind: str) -> pd.DataFrame:
    """The file's columns under our names (see :data:`ALIASES`; ``Instruction`` and other case
    variants of a known name too); refuses a mapping that would hide text."""
    df = raw.frame.copy()
    cols = [str(c).strip() for c in df.columns]
    df.columns = [c.lower() if c.lower() in _KNOWN and c.lower() not in cols else c for c in cols]
    raw.names.update({c.lower(): c for c in cols if c.lower() in _KNOWN and c.lower() not in cols})
    for other, ours in ALIASES.get(kind, {}).items():
        if other not in df:
            continue
        if ours not in df:
            df = df.rename(columns={other: ours})
            raw.names[ours] = raw.names.pop(other, other)
        elif any(not blank(a) and str(a) != str(b) for a, b in zip(df[other], df[ours])):
            raise DataError(raw.path, f"has both '{other}' and '{ours}' with different text; keep the one to use "
                                      f"(this reader reads '{other}' as '{ours}')", field=other)
    if kind in _TASK_KINDS and "instruction" in df:
        for col in df.columns:
            if col.lower() in UNPLACED_CONTENT and not all(blank(v) for v in df[col]):
                raise DataError(raw.path, f"column '{col}' looks like part of the task, and only 'instruction' and "
                                          "'input' reach the model; merge it into 'input' (or 'instruction'), or "
                                          "remove the column if it is not part of the task", field=col)
    return df


def blank(v) -> bool:
    return is_null(v) or (isinstance(v, str) and not v.strip())


def require(raw: Raw, df: pd.DataFrame, columns: Iterable[str]) -> None:
    for col in columns:
        if col not in df:
            hint = ""
            if col == "instruction":
                found = [c for c in df.columns if c.lower() in INSTRUCTION_HINTS]
                hint = f"; rename '{found[0]}' to 'instruction' if it holds the instruction" if found else ""
            raise DataError(raw.path, f"missing column (the file has: {', '.join(map(str, df.columns))}){hint}",
                            field=col)


def require_text(raw: Raw, df: pd.DataFrame, col: str, *, allow_empty: bool = False) -> None:
    """Every value of ``col`` is a string (non-blank unless ``allow_empty``); texts are kept as they are
    (ids hash them with LF line ends, so CRLF and LF copies get the same id)."""
    values = df[col].tolist()
    for i, v in enumerate(values):
        if is_null(v):
            raise raw.error(i, "is missing (absent or null)", col)
        if not isinstance(v, str):
            raise raw.error(i, f"expected text, found {type(v).__name__} {v!r:.40}", col)
        if not allow_empty and not v.strip():
            raise raw.error(i, "is empty", col)


def clean_inputs(raw: Raw, df: pd.DataFrame) -> None:
    if "input" not in df:
        df["input"] = ""
        return
    for i, v in enumerate(df["input"]):
        if isinstance(v, (list, dict, np.ndarray)):
            raise raw.error(i, f"expected text, found {type(v).__name__}", "input")
    df["input"] = [d.clean_input(v) for v in df["input"]]


def optional_text(df: pd.DataFrame, col: str, default: str = "") -> None:
    df[col] = [default if blank(v) else str(v) for v in df[col]] if col in df else default


def invalid_rows(df: pd.DataFrame) -> np.ndarray:
    """Rows stored as an invalid answer (``valid`` false): their score/decision may be missing."""
    if "valid" not in df:
        return np.zeros(len(df), dtype=bool)
    return np.array([str(v).strip().lower() in ("false", "0", "0.0", "no") for v in df["valid"]], dtype=bool)


def order(df: pd.DataFrame, front: list[str], raw: Raw | None = None) -> pd.DataFrame:
    """``front`` columns first, the file's other columns after them. With ``raw``, ``attrs`` say
    where the table came from: ``path``, ``format`` and ``renamed`` (our name -> the file's name)."""
    front = [c for c in front if c in df]
    out = df[front + [c for c in df.columns if c not in front]].reset_index(drop=True)
    if raw is not None:
        out.attrs.update(path=str(raw.path), format=raw.fmt, renamed=dict(raw.names))
    return out


def empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def load_kind(kind: str, path, split, allow_empty: bool, columns: list[str]) -> Raw | pd.DataFrame:
    try:
        return load(path, split=split, headerless=HEADERLESS.get(kind))
    except DataError as e:
        if allow_empty and (e.reason.startswith("file is empty") or e.reason.startswith("has no records")
                            or e.reason.startswith("has a header row but no data rows")):
            return empty(columns)
        raise
