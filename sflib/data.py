"""Canonical records for every pipeline stage, and import/export of the original layouts.

Canonical tables (pandas DataFrames; stored as JSONL or Parquet by file extension):

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
import io
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

    ``row`` is 1-based and counts records (data rows of a CSV after its header, entries of a JSON
    list, lines of a JSONL file).
    """

    def __init__(self, path: os.PathLike | str | None, message: str, row: int | None = None,
                 field: str | None = None):
        self.path, self.row, self.field, self.reason = (str(path) if path is not None else None), row, field, message
        where = [self.path or "<data>"]
        if row is not None:
            where.append(f"row {row}")
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
    if text.strip() == "" or text.strip().lower() == "nan":
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


# ----------------------------------------------------------------------------- reading helpers

def _read_checked(path: os.PathLike | str) -> tuple[bytes, str]:
    """The file's bytes and text, after checking it exists and is UTF-8 (a BOM is allowed)."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    if path.is_dir():
        raise DataError(path, "is a folder, expected a file")
    raw = path.read_bytes()
    try:
        return raw, raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(path, f"not valid UTF-8 (byte {e.start}, line {line}); re-save the file as UTF-8") from None


def _read_text(path: os.PathLike | str) -> str:
    return _read_checked(path)[1]


def _read_csv(path: os.PathLike | str, columns: list[str], header: bool) -> pd.DataFrame:
    """Read a CSV of string fields; with ``header`` the named columns must be present (extra ones are kept)."""
    raw, text = _read_checked(path)
    if not text.strip():
        raise DataError(path, "file is empty")
    try:  # parsing the bytes is about twice as fast as parsing the decoded text
        df = pd.read_csv(io.BytesIO(raw), encoding="utf-8-sig", dtype=str, keep_default_na=False, header=0 if header else None,
                         names=None if header else columns, engine="c")
    except pd.errors.ParserError as e:
        raise DataError(path, f"malformed CSV: {e} (expected {len(columns)} fields per row: {','.join(columns)})") from None
    if header:
        df.columns = [str(c).strip() for c in df.columns]
        for col in columns:
            if col not in df.columns:
                raise DataError(path, f"missing column (header has: {', '.join(map(str, df.columns))})", field=col)
    else:
        # Too few fields on a row leaves NaN in the trailing columns (too many raises above).
        # A headerless file given where a header CSV is expected shows up here as a header-like first row.
        if [str(v) for v in df.iloc[0].tolist()[: len(columns)]] == columns[: df.shape[1]] or (
                str(df.iloc[0, 0]).strip() == "instruction" and str(df.iloc[0, 1]).strip() == "input"):
            raise DataError(path, "has a header row, but this layout is headerless "
                                  f"({','.join(columns)}); remove the header or use the header-CSV reader", row=1)
    missing = df[columns].isna()
    if missing.values.any():
        r, c = next(zip(*missing.values.nonzero()))
        raise DataError(path, f"row has too few fields (expected {len(columns)}: {','.join(columns)})",
                        row=int(r) + 1, field=columns[int(c)])
    return df


def _require_text(df: pd.DataFrame, path, columns: Iterable[str]) -> None:
    for col in columns:
        blank = df[col].astype(str).str.strip() == ""
        if blank.any():
            raise DataError(path, "is empty", row=int(blank.values.argmax()) + 1, field=col)


def _load_json_list(path: os.PathLike | str) -> list:
    """A JSON list of objects, or JSON Lines with one object per line."""
    text = _read_text(path)
    if not text.strip():
        raise DataError(path, "file is empty")
    if Path(path).suffix.lower() == ".jsonl":
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(path, f"malformed JSON line: {e.msg} (column {e.colno})", row=n) from None
    else:
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(path, f"malformed JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
        if not isinstance(records, list):
            raise DataError(path, f"expected a JSON list of objects, found {type(records).__name__}")
    for n, rec in enumerate(records, 1):
        if not isinstance(rec, dict):
            raise DataError(path, f"expected an object, found {type(rec).__name__}", row=n)
    return records


def _require_keys(records: list[dict], path, keys: Iterable[str], text_keys: Iterable[str] = ()) -> None:
    for n, rec in enumerate(records, 1):
        for k in keys:
            if k not in rec:
                raise DataError(path, f"missing key (entry has: {', '.join(rec) or 'nothing'})", row=n, field=k)
        for k in text_keys:
            if not isinstance(rec[k], str):
                raise DataError(path, f"expected text, found {type(rec[k]).__name__}", row=n, field=k)
            if not rec[k].strip():
                raise DataError(path, "is empty", row=n, field=k)


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


def read_instructions(path: os.PathLike | str, source: str | None = None, split: str = "train") -> pd.DataFrame:
    """Instructions from JSON / JSONL / CSV / Parquet, or a ``datasets`` folder saved with ``save_to_disk``.

    ``source`` defaults to each record's ``source``/``dataset`` field, else the file's stem.
    Duplicates (same instruction and input) are dropped, keeping the first.
    """
    path = Path(path)
    source = source if source is not None else path.stem
    if path.is_dir():
        try:
            import datasets  # optional dependency
        except ImportError:
            raise DataError(path, "is a folder; reading a Hugging Face dataset needs `pip install datasets`") from None
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise DataError(path, f"has no split '{split}' (splits: {', '.join(ds)})")
            ds = ds[split]
        records = list(ds)
    else:
        suffix = path.suffix.lower()
        if suffix in (".json", ".jsonl"):
            records = _load_json_list(path)
        elif suffix == ".csv":
            df = _read_csv(path, ["instruction"], header=True)
            records = df.to_dict("records")
        elif suffix == ".parquet":
            if not path.exists():
                raise DataError(path, "file not found")
            records = pd.read_parquet(path).to_dict("records")
        else:
            raise DataError(path, f"unsupported file type '{suffix}' (use .json, .jsonl, .csv, .parquet or a datasets folder)")
    _require_keys(records, path, ["instruction"], text_keys=["instruction"])
    return instructions_frame(records, source)


def write_instructions_json(df: pd.DataFrame, path: os.PathLike | str) -> Path:
    """The original instructions layout ``[{"instruction", "input"}]``."""
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


def read_generations(path: os.PathLike | str, generator: str = "") -> pd.DataFrame:
    """The original generation JSON ``[{"instruction", "input", "responses": [...]}]`` as responses."""
    records = _load_json_list(path)
    _require_keys(records, path, ["instruction", "responses"], text_keys=["instruction"])
    rows = []
    for n, rec in enumerate(records, 1):
        if not isinstance(rec["responses"], list):
            raise DataError(path, f"expected a list of responses, found {type(rec['responses']).__name__}",
                            row=n, field="responses")
        for k, text in enumerate(rec["responses"]):
            if not isinstance(text, str):
                raise DataError(path, f"response {k + 1} is {type(text).__name__}, expected text", row=n, field="responses")
            rows.append({"instruction": rec["instruction"], "input": rec.get("input"), "response": text,
                         "dataset": rec.get("dataset", "")})
    return responses_frame(pd.DataFrame(rows), generator=generator)


def write_generations(df: pd.DataFrame, path: os.PathLike | str) -> Path:
    """Responses in the original generation JSON layout, grouped by instruction in first-seen order."""
    out: dict[str, dict] = {}
    for rec in df[["instruction_id", "instruction", "input", "response"]].itertuples(index=False):
        entry = out.setdefault(rec.instruction_id, {"instruction": rec.instruction, "input": rec.input, "responses": []})
        entry["responses"].append(rec.response)
    return atomic_write_text(path, json.dumps(list(out.values()), ensure_ascii=False, indent=1))


def read_responses_csv(path: os.PathLike | str, generator: str = "") -> pd.DataFrame:
    """Header CSV ``instruction,input,response`` (the original ratings-request layout)."""
    df = _read_csv(path, ["instruction", "input", "response"], header=True)
    _require_text(df, path, ["instruction"])
    return responses_frame(df, generator=generator)


def write_responses_csv(df: pd.DataFrame, path: os.PathLike | str) -> Path:
    with atomic_path(path) as tmp:
        df[["instruction", "input", "response"]].to_csv(tmp, index=False)
    return Path(path)


def read_pairs_csv(path: os.PathLike | str) -> pd.DataFrame:
    """Header CSV ``instruction,input,response1,response2`` (the original rankings-request layout)."""
    df = _read_csv(path, ["instruction", "input", "response1", "response2"], header=True)
    _require_text(df, path, ["instruction"])
    return add_ids(df)


def write_pairs_csv(df: pd.DataFrame, path: os.PathLike | str) -> Path:
    with atomic_path(path) as tmp:
        df[["instruction", "input", "response1", "response2"]].to_csv(tmp, index=False)
    return Path(path)


def all_pairs(responses: pd.DataFrame) -> pd.DataFrame:
    """Every unordered pair of distinct responses to the same instruction: k·(k−1)/2 per instruction."""
    rows = []
    for iid, group in responses.groupby("instruction_id", sort=False):
        g = group.drop_duplicates("response_id").to_dict("records")
        for i in range(len(g)):
            for j in range(i + 1, len(g)):
                rows.append({"instruction_id": iid, "response_id_1": g[i]["response_id"],
                             "response_id_2": g[j]["response_id"], "instruction": g[i]["instruction"],
                             "input": g[i]["input"], "response1": g[i]["response"], "response2": g[j]["response"]})
    return pd.DataFrame(rows, columns=RANKING_COLUMNS[:-1])


# ----------------------------------------------------------------------------- feedback

def read_ratings_csv(path: os.PathLike | str) -> pd.DataFrame:
    """Headerless feedback CSV ``instruction,input,output,score`` (scores 1–7) as canonical ratings."""
    df = _read_csv(path, ["instruction", "input", "output", "score"], header=False)
    _require_text(df, path, ["instruction"])
    df["score"] = parse_scores(df["score"], path)
    df = df.rename(columns={"output": "response"})
    return add_ids(df)[RATING_COLUMNS]


def write_ratings_csv(df: pd.DataFrame, path: os.PathLike | str) -> Path:
    """Ratings in the original headerless layout (rows without a valid score are left out)."""
    df = df[df["score"].notna()]
    out = pd.DataFrame({"instruction": df["instruction"], "input": df["input"], "output": df["response"],
                        "score": df["score"].astype(int)})
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False, header=False)
    return Path(path)


def read_rankings_csv(path: os.PathLike | str) -> pd.DataFrame:
    """Headerless feedback CSV ``instruction,input,output1,output2,feedback`` as canonical rankings."""
    df = _read_csv(path, ["instruction", "input", "output1", "output2", "feedback"], header=False)
    _require_text(df, path, ["instruction"])
    df["decision"] = parse_decisions(df["feedback"], path)
    df = df.rename(columns={"output1": "response1", "output2": "response2"})
    return add_ids(df)[RANKING_COLUMNS]


def write_rankings_csv(df: pd.DataFrame, path: os.PathLike | str) -> Path:
    """Rankings in the original headerless layout with ``(a)`` / ``(b)`` / ``equal``."""
    df = df[df["decision"].isin(DECISIONS)]
    out = pd.DataFrame({"instruction": df["instruction"], "input": df["input"], "output1": df["response1"],
                        "output2": df["response2"], "feedback": df["decision"].map(_LABELS_OUT)})
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False, header=False)
    return Path(path)


# ----------------------------------------------------------------------------- AlpacaEval outputs

def read_model_outputs(path: os.PathLike | str) -> pd.DataFrame:
    """AlpacaEval's outputs JSON ``[{"instruction", "output", "generator", "dataset"}]``.

    ``generator`` and ``dataset`` are optional (empty when absent); the instruction must be text
    and the output must be text (it may be empty: evaluation reports empty outputs with counts).
    """
    records = _load_json_list(path)
    _require_keys(records, path, ["instruction", "output"], text_keys=["instruction"])
    for n, rec in enumerate(records, 1):
        if not isinstance(rec["output"], str):
            raise DataError(path, f"expected text, found {type(rec['output']).__name__}", row=n, field="output")
    df = pd.DataFrame({
        "instruction": [r["instruction"] for r in records],
        "output": [r["output"] for r in records],
        "generator": [str(r.get("generator") or "") for r in records],
        "dataset": [str(r.get("dataset") or "") for r in records],
    })
    return df


def write_model_outputs(df: pd.DataFrame, path: os.PathLike | str) -> Path:
    recs = df[MODEL_OUTPUT_COLUMNS].to_dict("records")
    return atomic_write_text(path, json.dumps(recs, ensure_ascii=False, indent=2))


# ----------------------------------------------------------------------------- canonical storage

def write_table(df: pd.DataFrame, path: os.PathLike | str) -> Path:
    """Write a canonical table as ``.jsonl`` or ``.parquet`` (by extension), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".jsonl":
            df.to_json(tmp, orient="records", lines=True, force_ascii=False)
        elif suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            raise ValueError(f"{path}: unsupported table format '{suffix}' (use .jsonl or .parquet)")
    return path


def read_table(path: os.PathLike | str, required: Iterable[str] = ()) -> pd.DataFrame:
    """Read a canonical ``.jsonl`` / ``.parquet`` table, checking ``required`` columns are present."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        records = _load_json_list(path)
        df = pd.DataFrame.from_records(records)
    elif suffix == ".parquet":
        if not path.exists():
            raise DataError(path, "file not found")
        df = pd.read_parquet(path)
    else:
        raise DataError(path, f"unsupported table format '{suffix}' (use .jsonl or .parquet)")
    for col in required:
        if col not in df.columns:
            raise DataError(path, f"missing column (table has: {', '.join(df.columns)})", field=col)
    if "input" in df:
        df["input"] = [clean_input(x) for x in df["input"]]
    return df
