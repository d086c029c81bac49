"""Write tables atomically, never replacing a file that holds data with an empty table.

:func:`write_table` writes by the target's extension: ``.jsonl`` (JSON Lines), ``.parquet``,
``.json`` (a JSON list of records, e.g. AlpacaEval's layout) or ``.csv`` (with a header). The
file appears in one step (a temporary file beside it, then a rename), so a crash or a kill leaves
the previous file untouched. A run that ends with nothing to write does not wipe the previous
run's output: replacing an existing file with an empty table raises :class:`~sflib.core.data.DataError`
unless ``replace_with_empty=True``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from ..core.data import DataError, atomic_path, guard_empty

TABLE_SUFFIXES = (".jsonl", ".parquet", ".json", ".csv")


def write_table(df: pd.DataFrame, path: os.PathLike | str, *, replace_with_empty: bool = False) -> Path:
    """Write ``df`` to ``path`` atomically, in the format its extension names (see the module docs)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(path, f"unsupported table format '{suffix}' (use {', '.join(TABLE_SUFFIXES)})")
    guard_empty(len(df), path, replace_with_empty)
    with atomic_path(path) as tmp:
        if suffix == ".jsonl":
            if len(df):
                df.to_json(tmp, orient="records", lines=True, force_ascii=False)
        elif suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        elif suffix == ".json":
            text = df.to_json(orient="records", force_ascii=False)
            tmp.write_text(json.dumps(json.loads(text), ensure_ascii=False, indent=1), encoding="utf-8")
        else:
            df.to_csv(tmp, index=False)
    return path
