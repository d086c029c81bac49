"""What is in the data: the vendored canonical tables, counts per source dataset, and lengths.

Lengths are counted in whitespace-separated words, so they need no tokenizer and read the same
for every model. Where each file lives is :mod:`sflib.core.catalog`'s business.
"""
from __future__ import annotations

import pandas as pd

from . import catalog
from .stats import word_counts
from .. import io as sfio


_EVAL_OUTPUTS = {"eval_reference_outputs": "text-davinci-003 (reference)",
                 "eval_ratings_rm_outputs": "best-of-64, ratings RM",
                 "eval_rankings_rm_outputs": "best-of-64, rankings RM"}

#: moved to :func:`sflib.core.catalog.canonical_path`; this name is kept for the notebooks that use it
canonical_path = catalog.canonical_path


def load_canonical(name: str) -> pd.DataFrame:
    """The canonical table ``name`` (``data/canonical/<name>.jsonl``) as it is stored."""
    return sfio.read_table(catalog.canonical_path(name))


def word_count(texts) -> pd.Series:
    """Words per text (:func:`sflib.core.stats.word_counts`, the one word counter), index reset."""
    return word_counts(list(texts))


def summary_table() -> pd.DataFrame:
    """One row per vendored canonical table: rows, distinct instructions, distinct sources."""
    rows = []
    for path in sorted(catalog.canonical_dir().glob("*.jsonl")):
        df = sfio.read_table(path)
        n_ins = df["instruction_id"].nunique() if "instruction_id" in df else (
            df["id"].nunique() if "id" in df else df["instruction"].nunique())
        src = next((c for c in ("dataset", "source") if c in df and (df[c].astype(str) != "").any()), None)
        rows.append({"table": path.stem, "rows": len(df), "instructions": n_ins,
                     "sources": ", ".join(sorted(df[src].astype(str).unique())) if src else ""})
    return pd.DataFrame(rows)


def texts_long() -> pd.DataFrame:
    """All instruction and response/output texts of the vendored data in one long table:
    ``collection, source, kind ('instruction'|'input'|'response'), words``."""
    parts = []

    def add(collection, source, kind, texts):
        parts.append(pd.DataFrame({"collection": collection, "source": list(source), "kind": kind,
                                   "words": word_count(texts).to_numpy()}))

    ins = load_canonical("superni_instructions")
    add("SuperNI instructions", ins["source"], "instruction", ins["instruction"])
    add("SuperNI instructions", ins["source"], "input", ins["input"])
    resp = load_canonical("sample_responses")
    add("feedback sample (Alpaca-7B)", resp["source"], "response", resp["response"])
    for name, label in _EVAL_OUTPUTS.items():
        out = load_canonical(name)
        if name == "eval_reference_outputs":
            add("AlpacaEval instructions", out["dataset"], "instruction", out["instruction"])
        add(label, out["dataset"], "response", out["output"])
    return pd.concat(parts, ignore_index=True)


def source_counts() -> pd.DataFrame:
    """Instructions per source dataset for the AlpacaEval reference set and the policies' outputs."""
    frames = []
    for name, label in _EVAL_OUTPUTS.items():
        df = load_canonical(name)
        frames.append(df.groupby("dataset").size().rename(label))
    return pd.concat(frames, axis=1).fillna(0).astype(int)
