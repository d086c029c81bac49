"""Convert the vendored original data (``data/original``) into canonical tables (``data/canonical``).

``python -m sflib convert-original`` (or :func:`convert_original`) reads every file of the paper's
released sample (located through :mod:`sflib.core.catalog`) with the readers of :mod:`sflib.io` and
writes JSONL tables with stable ids, plus ``data/canonical/MANIFEST.json`` listing each output, its
source and its row counts. The originals stay untouched beside them.

``python -m sflib convert IN OUT --from KIND [--to LAYOUT] [--split NAME]`` converts one file:
``--from`` names the kind of table in ``IN`` (``instructions``, ``responses``, ``pairs``,
``ratings``, ``rankings``, ``model_outputs``, ``annotations``, or ``table`` for any table as it is;
the old names ``generations``, ``responses_csv`` and ``pairs_csv`` still work). The file's format
is read from its content (JSON, JSON Lines, CSV with or without header, Parquet, or a folder saved
with ``datasets``; ``--split`` picks a split of a ``DatasetDict``). ``--to`` names the output
layout: ``table`` (default: ``.jsonl`` / ``.parquet`` / ``.json`` / ``.csv`` by OUT's extension) or
one of the original layouts.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..core import catalog
from .. import io
from ..core import data as d

PAPER_JUDGE = "gpt-3.5-turbo (paper)"
PAPER_GENERATOR = "alpaca-7b (paper)"

# output table -> (layout read, catalog role of the original, extra constant columns)
_ORIGINALS = {
    "superni_instructions": ("instructions", "superni.instructions", {"source": "superni"}),
    "sample_responses": ("generations", "feedback.responses", {"generator": PAPER_GENERATOR, "source": "superni"}),
    "sample_ratings": ("ratings", "feedback.ratings", {"judge": PAPER_JUDGE, "source": "superni"}),
    "sample_rankings": ("rankings", "feedback.rankings", {"judge": PAPER_JUDGE, "source": "superni"}),
    "eval_reference_outputs": ("model_outputs", "eval.reference_outputs", {}),
    "eval_ratings_rm_outputs": ("model_outputs", "eval.ratings_rm_outputs", {}),
    "eval_rankings_rm_outputs": ("model_outputs", "eval.rankings_rm_outputs", {}),
    "eval_ratings_reference": ("ratings", "eval.ratings.reference",
                               {"judge": PAPER_JUDGE, "generator": "text_davinci_003"}),
    "eval_ratings_ratings_rm": ("ratings", "eval.ratings.ratings_rm",
                                {"judge": PAPER_JUDGE, "generator": "absolute_alpaca_7b_64"}),
    "eval_rankings_reference_vs_ratings_rm": (
        "rankings", "eval.rankings.reference_vs_ratings_rm",
        {"judge": PAPER_JUDGE, "generator": "text_davinci_003 (a) vs absolute_alpaca_7b_64 (b)"}),
}

READERS = {
    "instructions": io.read_instructions,
    "responses": io.read_responses,
    "pairs": io.read_pairs,
    "ratings": io.read_ratings,
    "rankings": io.read_rankings,
    "model_outputs": lambda path, **kw: io.read_model_outputs(path, **kw).drop(columns=["instruction_id"]),
    "annotations": io.read_annotations,
    "table": io.read_table,
    # the names of the original layouts, kept for scripts that use them
    "generations": io.read_responses,
    "responses_csv": io.read_responses,
    "pairs_csv": io.read_pairs,
}

WRITERS = {
    "instructions": d.write_instructions_json,
    "generations": d.write_generations,
    "responses_csv": d.write_responses_csv,
    "pairs_csv": d.write_pairs_csv,
    "ratings": d.write_ratings_csv,
    "rankings": d.write_rankings_csv,
    "model_outputs": d.write_model_outputs,
    "table": io.write_table,
}


def convert_original(original: Path | str | None = None, out: Path | str | None = None) -> pd.DataFrame:
    """Convert every vendored original file; return a summary (one row per output table)."""
    original = Path(original) if original else catalog.original_dir()
    out = Path(out) if out else catalog.canonical_dir()
    rows = []
    for name, (layout, role, extra) in _ORIGINALS.items():
        rel = catalog.entry(role).original
        df = READERS[layout](original / rel)
        for col, value in extra.items():
            df[col] = value
        n_read = len(df)
        dropped = 0
        if layout == "generations":
            # the same response text twice for one instruction is one response (same id)
            df, dropped = d.dedupe(df, ["response_id"])
            df = df.drop(columns=["dataset"], errors="ignore")  # the sample has no per-record dataset; `source` says it
        target = out / f"{name}.jsonl"
        io.write_table(df, target)
        rows.append({"table": target.name, "layout": layout, "source": f"original/{rel}", "rows_read": n_read,
                     "rows_written": len(df), "duplicates_dropped": dropped})
    summary = pd.DataFrame(rows)
    d.atomic_write_text(out / "MANIFEST.json", json.dumps(rows, indent=1) + "\n")
    return summary


#: the columns each output layout is made from (``table`` writes any table)
NEEDS = {
    "instructions": ["instruction", "input"],
    "generations": ["instruction_id", "instruction", "input", "response"],
    "responses_csv": ["instruction", "input", "response"],
    "pairs_csv": ["instruction", "input", "response1", "response2"],
    "ratings": ["instruction", "input", "response", "score"],
    "rankings": ["instruction", "input", "response1", "response2", "decision"],
    "model_outputs": ["instruction", "output", "generator", "dataset"],
    "table": [],
}


def _for_model_outputs(df: pd.DataFrame) -> pd.DataFrame:
    """Responses become AlpacaEval outputs: ``response`` -> ``output``, ``dataset`` from ``source`` (else empty)."""
    df = df.copy()
    if "output" not in df and "response" in df:
        df = df.rename(columns={"response": "output"})
    if "dataset" not in df:
        df["dataset"] = df["source"] if "source" in df else ""
    if "generator" not in df and "output" in df:
        df["generator"] = ""
    return df


def convert_file(src: Path | str, dst: Path | str, src_layout: str, dst_layout: str = "table",
                 split: str | None = None) -> int:
    """Convert one file between layouts (see ``READERS``/``WRITERS``); return the number of rows.

    A conversion the input cannot give (``--from instructions --to rankings``: instructions have no
    decisions) is refused with one line naming the missing fields, before anything is written."""
    if src_layout not in READERS:
        raise ValueError(f"unknown input layout '{src_layout}'; choose from {', '.join(READERS)}")
    if dst_layout not in WRITERS:
        raise ValueError(f"unknown output layout '{dst_layout}'; choose from {', '.join(WRITERS)}")
    df = READERS[src_layout](src, split=split)
    if dst_layout == "model_outputs":
        df = _for_model_outputs(df)
    missing = [c for c in NEEDS[dst_layout] if c not in df.columns]
    if missing:
        raise d.DataError(src, f"cannot convert {src_layout} to {dst_layout}: {dst_layout} needs "
                               f"{', '.join(NEEDS[dst_layout])} and {src_layout} has no {', '.join(missing)}",
                          field=missing[0])
    WRITERS[dst_layout](df, dst)
    return len(df)


def _cli_convert_original(args) -> int:
    print(convert_original(args.original, args.out).to_string(index=False))
    return 0


def _cli_convert(args) -> int:
    n = convert_file(args.src, args.dst, args.src_layout, args.dst_layout, args.split)
    print(f"wrote {n} rows to {args.dst}")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("convert-original", help="convert the vendored original data into data/canonical")
    p.add_argument("--original", default=None, help="folder of original files (default data/original)")
    p.add_argument("--out", default=None, help="output folder (default data/canonical)")
    p.set_defaults(func=_cli_convert_original)

    p = sub.add_parser("convert", help="convert one file between an original layout and a canonical table")
    p.add_argument("src", help="input file or saved datasets folder (" + io.cli.FORMATS_HELP + ")")
    p.add_argument("dst")
    p.add_argument("--split", default=None, help="split of a saved DatasetDict folder (default: train)")
    p.add_argument("--from", dest="src_layout", required=True, choices=sorted(READERS))
    p.add_argument("--to", dest="dst_layout", default="table", choices=sorted(WRITERS),
                   help="output layout (default: canonical table, .jsonl or .parquet by extension)")
    p.set_defaults(func=_cli_convert)
