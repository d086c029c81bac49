"""Canonical records for every pipeline stage, and import/export of the original layouts.

Canonical tables (pandas DataFrames; stored as JSONL or Parquet by file extension). Reading every
kind of table lives in :mod:`sflib.io` (one reader per kind, format sniffed from the content); the
``read_*`` functions here are the old names of those readers.

- instructions: ``id, instruction, input, source``
- responses:    ``instruction_id, response_id, instruction, input, response, generator, params``
- ratings:      ``instruction_id, response_id, instruction, input, response, score`` (+ ``judge`` ...)
- rankings:     ``instruction_id, response_id_1, response_id_2, instruction, input, response1,
                response2, decision`` with ``decision`` in ``a`` / ``b`` / ``equal`` (+ ``judge`` ...)
- model outputs (AlpacaEval): ``instruction, output, generator, dataset``

Original layouts read and written here:

- instructions JSON ``[{"instruction", "input"}]`` (also JSONL, CSV, Parquet, a ``datasets`` folder)
- generation JSON ``[{"instruction", "input", "responses": [...]}]``
- header CSVs ``instruction,input,response`` and ``instruction,input,response1,response2``
- headerless feedback CSVs ``instruction,input,output,score`` and
  ``instruction,input,output1,output2,feedback`` with feedback ``(a)`` / ``(b)`` / ``equal``
- AlpacaEval outputs JSON ``[{"instruction", "output", "generator", "dataset"}]``

Conventions: an empty, missing, ``None``, NaN or literal ``"nan"`` input is the empty string
everywhere (the original scripts wrote pandas' NaN as ``nan``); ids are hashes of the text, so
the same instruction or response gets the same id in every file; every write is atomic.
Every problem with an input file raises :class:`DataError` naming the file, the row and the field.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

INSTRUCTION_COLUMNS = ["id", "instruction", "input", "source"]
RESPONSE_COLUMNS = ["instruction_id", "response_id", "instruction", "input", "response", "generator", "params"]
RATING_COLUMNS = ["instruction_id", "response_id", "instruction", "input", "response", "score"]
RANKING_COLUMNS = [
    "instruction_id", "response_id_1", "response_id_2", "instruction", "input",
    "response1", "response2", "decision",
]
MODEL_OUTPUT_COLUMNS = ["instruction", "output", "generator", "dataset"]
DECISIONS = ("a", "b", "equal")
SCORE_MIN, SCORE_MAX = 1, 7
# original feedback label -> canonical decision
_LABELS = {"(a)": "a", "(b)": "b", "equal": "equal", "a": "a", "b": "b"}
_LABELS_OUT = {"a": "(a)", "b": "(b)", "equal": "equal"}


class DataError(ValueError):
    """A problem with an input file, naming the file and, where known, the row and the field.

    ``row`` is 1-based and counts records as a user does: entries of a JSON list, data rows of a
    CSV after its header (``line`` then gives the line in the file where the row starts, when it
    differs), lines of a JSON Lines file (``unit="line"``).
    """

    def __init__(self, path: os.PathLike | str | None, message: str, row: int | None = None,
                 field: str | None = None, *, line: int | None = None, unit: str = "row"):
        self.path, self.row, self.field, self.reason = (str(path) if path is not None else None), row, field, message
        self.line, self.unit = line, unit
        where = [self.path or "<data>"]
        if row is not None:
            where.append(f"{unit} {row}" + (f" (line {line})" if line is not None else ""))
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}")


# ----------------------------------------------------------------------------- normalisation & ids

def clean_input(value: object) -> str:
    """The canonical form of an optional ``input``: '' for None, NaN, 'nan' and blank strings."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    text = str(value)
    stripped = text.strip()
    if not stripped or (len(stripped) == 3 and stripped.lower() == "nan"):
        return ""
    return _normalise_newlines(text)


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n") if "\r" in text else text


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def make_id(instruction: str, input: object = "") -> str:
    """Stable instruction id: a hash of the instruction and its (cleaned) input."""
    return _hash(_normalise_newlines(str(instruction)), clean_input(input))


def make_response_id(instruction_id: str, response: str) -> str:
    """Stable response id: a hash of the instruction id and the response text."""
    return _hash(instruction_id, _normalise_newlines(str(response)))


def _per_distinct(fn, *columns: pd.Series) -> list:
    """``[fn(*row) for row in zip(*columns)]``, computed once per distinct row of text values.

    Feedback tables repeat each instruction and response many times (10 pairs per instruction), so
    hashing distinct values only is several times faster at 100k rows. Columns that are not all
    text fall back to the plain per-row loop, so the result is always the same."""
    if len(columns[0]) == 0 or not all(pd.api.types.is_string_dtype(c) for c in columns):
        return [fn(*row) for row in zip(*columns)]
    codes = pd.factorize(columns[0], use_na_sentinel=False)[0]
    for col in columns[1:]:
        c = pd.factorize(col, use_na_sentinel=False)[0]
        codes = pd.factorize(codes.astype("int64") * (int(c.max()) + 1) + c)[0]
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    values = [col.to_numpy(object)[first] for col in columns]
    distinct = np.empty(len(first), dtype=object)
    distinct[:] = [fn(*row) for row in zip(*values)]
    return distinct[inverse.ravel()].tolist()


def add_ids(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``instruction_id`` and the response id column(s) a frame's text columns call for."""
    df = df.copy()
    df["input"] = _per_distinct(clean_input, df["input"])
    df["instruction"] = _per_distinct(lambda x: _normalise_newlines(str(x)), df["instruction"])
    df["instruction_id"] = _per_distinct(make_id, df["instruction"], df["input"])
    if "response" in df:
        df["response_id"] = _per_distinct(make_response_id, df["instruction_id"], df["response"])
    if "response1" in df:
        df["response_id_1"] = _per_distinct(make_response_id, df["instruction_id"], df["response1"])
        df["response_id_2"] = _per_distinct(make_response_id, df["instruction_id"], df["response2"])
    return df


def dedupe(df: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, int]:
    """Drop repeated rows by ``keys`` keeping the first occurrence; return the frame and the count dropped."""
    mask = df.duplicated(subset=keys, keep="first")
    return df.loc[~mask].reset_index(drop=True), int(mask.sum())


# ----------------------------------------------------------------------------- atomic writes

@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    A crash (or an exception) leaves any previous file untouched and no half-written file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: os.PathLike | str, text: str) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


# ----------------------------------------------------------------------------- reading & writing helpers

def guard_empty(n_rows: int, path: os.PathLike | str, replace_with_empty: bool = False) -> None:
    """Refuse to replace an existing, non-empty ``path`` with a table of ``n_rows == 0``."""
    path = Path(path)
    if n_rows == 0 and not replace_with_empty and path.is_file() and path.stat().st_size > 0:
        raise DataError(path, "not replaced: the new table is empty (0 rows) and the existing file holds data; "
                              "the previous file is kept (remove it first to write an empty table)")


def parse_scores(values: Iterable[object], path=None, field: str = "score") -> list[int]:
    """Integer scores on the 1–7 scale; anything else raises a :class:`DataError` naming the row."""
    out = []
    for n, v in enumerate(values, 1):
        try:
            f = float(str(v).strip())
        except ValueError:
            raise DataError(path, f"score {v!r} is not a number on the {SCORE_MIN}-{SCORE_MAX} scale",
                            row=n, field=field) from None
        if not (SCORE_MIN <= f <= SCORE_MAX) or f != int(f):
            raise DataError(path, f"score {v!r} is outside the {SCORE_MIN}-{SCORE_MAX} integer scale",
                            row=n, field=field)
        out.append(int(f))
    return out


def parse_decisions(values: Iterable[object], path=None, field: str = "feedback") -> list[str]:
    """Canonical decisions from ``(a)`` / ``(b)`` / ``equal`` labels (``a`` / ``b`` accepted too)."""
    out = []
    for n, v in enumerate(values, 1):
        label = _LABELS.get(str(v).strip().lower())
        if label is None:
            raise DataError(path, f"unknown feedback label {v!r}; expected one of (a), (b), equal", row=n, field=field)
        out.append(label)
    return out


# ----------------------------------------------------------------------------- instructions

def instructions_frame(records: list[dict], source: str = "") -> pd.DataFrame:
    """Canonical, deduplicated instructions from ``{instruction, input?, source?|dataset?}`` dicts."""
    df = pd.DataFrame({
        "instruction": [_normalise_newlines(r["instruction"]) for r in records],
        "input": [clean_input(r.get("input")) for r in records],
        "source": [str(r.get("source") or r.get("dataset") or source) for r in records],
    })
    df["id"] = [make_id(i, x) for i, x in zip(df["instruction"], df["input"])]
    df, _ = dedupe(df[INSTRUCTION_COLUMNS], ["id"])
    return df




def write_instructions_json(df: pd.DataFrame, path: os.PathLike | str) -> Path:
    """The original instructions layout ``[{"instruction", "input"}]``."""
    guard_empty(len(df), path)
    recs = [{"instruction": i, "input": x} for i, x in zip(df["instruction"], df["input"])]
    return atomic_write_text(path, json.dumps(recs, ensure_ascii=False, indent=1))


# ----------------------------------------------------------------------------- responses

def responses_frame(rows: pd.DataFrame, generator: str = "", params: str = "{}") -> pd.DataFrame:
    """Canonical responses from a frame with ``instruction, input, response`` (other columns kept)."""
    df = add_ids(rows)
    if "generator" not in df:
        df["generator"] = generator
    if "params" not in df:
        df["params"] = params
    front = [c for c in RESPONSE_COLUMNS if c in df]
    return df[front + [c for c in df.columns if c not in front]].reset_index(drop=True)




def write_generations(df: pd.DataFrame, path: os.PathLike | str) -> Path:
    """Responses in the original generation JSON layout, grouped by instruction in first-seen order."""
    guard_empty(len(df), path)
    out: dict[str, dict] = {}
    for rec in df[["instruction_id", "instruction", "input", "response"]].itertuples(index=False):
        entry = out.setdefault(rec.instruction_id, {"instruction": rec.instruction, "input": rec.input, "responses": []})
        entry["responses"].append(rec.response)
    return atomic_write_text(path, json.dumps(list(out.values()), ensure_ascii=False, indent=1))




def write_responses_csv(df: pd.DataFrame, path: os.PathLike | str) -> Path:
    guard_empty(len(df), path)
    with atomic_path(path) as tmp:
        df[["instruction", "input", "response"]].to_csv(tmp, index=False)
    return Path(path)




def write_pairs_csv(df: pd.DataFrame, path: os.PathLike | str) -> Path:
    guard_empty(len(df), path)
    with atomic_path(path) as tmp:
        df[["instruction", "input", "response1", "response2"]].to_csv(tmp, index=False)
    return Path(path)


def all_pairs(responses: pd.DataFrame) -> pd.DataFrame:
    """Every unordered pair of distinct responses to the same instruction: k·(k−1)/2 per instruction,
    instructions in first-seen order, pairs (i, j), i < j, in the order of the responses (vectorised:
    a self-join per instruction, ~0.1 s for 5,000 instructions x k = 5)."""
    df = responses.drop_duplicates(["instruction_id", "response_id"]).reset_index(drop=True)
    if df.empty:
        return pd.DataFrame(columns=RANKING_COLUMNS[:-1])
    group = pd.factorize(df["instruction_id"], use_na_sentinel=False)[0]
    side = pd.DataFrame({"g": group, "i": df.groupby(group, sort=False).cumcount().to_numpy(),
                         "row": np.arange(len(df))})
    m = side.merge(side, on="g", suffixes=("1", "2"))
    m = m[m["i1"] < m["i2"]].sort_values(["g", "i1", "i2"], kind="stable")
    a, b = m["row1"].to_numpy(), m["row2"].to_numpy()
    col = {c: df[c].to_numpy(object) for c in ("instruction_id", "response_id", "instruction", "input", "response")}
    return pd.DataFrame({"instruction_id": col["instruction_id"][a], "response_id_1": col["response_id"][a],
                         "response_id_2": col["response_id"][b], "instruction": col["instruction"][a],
                         "input": col["input"][a], "response1": col["response"][a], "response2": col["response"][b]},
                        columns=RANKING_COLUMNS[:-1])


# ----------------------------------------------------------------------------- feedback



def write_ratings_csv(df: pd.DataFrame, path: os.PathLike | str) -> Path:
    """Ratings in the original headerless layout (rows without a valid score are left out)."""
    df = df[df["score"].notna()]
    guard_empty(len(df), path)
    out = pd.DataFrame({"instruction": df["instruction"], "input": df["input"], "output": df["response"],
                        "score": df["score"].astype(int)})
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False, header=False)
    return Path(path)




def write_rankings_csv(df: pd.DataFrame, path: os.PathLike | str) -> Path:
    """Rankings in the original headerless layout with ``(a)`` / ``(b)`` / ``equal``."""
    df = df[df["decision"].isin(DECISIONS)]
    guard_empty(len(df), path)
    out = pd.DataFrame({"instruction": df["instruction"], "input": df["input"], "output1": df["response1"],
                        "output2": df["response2"], "feedback": df["decision"].map(_LABELS_OUT)})
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False, header=False)
    return Path(path)


# ----------------------------------------------------------------------------- AlpacaEval outputs

def write_model_outputs(df: pd.DataFrame, path: os.PathLike | str) -> Path:
    guard_empty(len(df), path)
    recs = df[MODEL_OUTPUT_COLUMNS].to_dict("records")
    return atomic_write_text(path, json.dumps(recs, ensure_ascii=False, indent=2))
