"""Convert the vendored original data (``data/original``) into canonical tables (``data/canonical``).

``python -m sflib convert-original`` (or :func:`convert_original`) reads every file of the paper's
released sample with the readers in :mod:`sflib.data` and writes JSONL tables with stable ids,
plus ``data/canonical/MANIFEST.json`` listing each output, its source and its row counts. The
originals stay untouched beside them. ``python -m sflib convert IN OUT --layout L`` converts any
single file between an original layout and a canonical table.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import data as d
from .paths import data_dir

PAPER_JUDGE = "gpt-3.5-turbo (paper)"
PAPER_GENERATOR = "alpaca-7b (paper)"

# output name -> (reader, original path relative to data/original, extra constant columns)
_ORIGINALS = {
    "superni_instructions": ("instructions", "instructions/natural_instructions.json", {"source": "superni"}),
    "sample_responses": ("generations", "alpaca_generation/sample_generation.json",
                         {"generator": PAPER_GENERATOR, "source": "superni"}),
    "sample_ratings": ("ratings", "alpaca_generation/feedback_ratings_sample_generation.csv",
                       {"judge": PAPER_JUDGE, "source": "superni"}),
    "sample_rankings": ("rankings", "alpaca_generation/feedback_rankings_sample_generation.csv",
                        {"judge": PAPER_JUDGE, "source": "superni"}),
    "eval_reference_outputs": ("model_outputs", "inference_model_outputs/davinci003.json", {}),
    "eval_ratings_rm_outputs": ("model_outputs", "inference_model_outputs/ratings_alpaca.json", {}),
    "eval_rankings_rm_outputs": ("model_outputs", "inference_model_outputs/rankings_alpaca.json", {}),
    "eval_ratings_reference": ("ratings", "inference_model_outputs/feedback_ratings_davinci_for_llm_eval.csv",
                               {"judge": PAPER_JUDGE, "generator": "text_davinci_003"}),
    "eval_ratings_ratings_rm": ("ratings", "inference_model_outputs/feedback_ratings_ratings_for_llm_eval.csv",
                                {"judge": PAPER_JUDGE, "generator": "absolute_alpaca_7b_64"}),
    "eval_rankings_reference_vs_ratings_rm": (
        "rankings", "inference_model_outputs/feedback_rankings_davincivsratings_for_llm_eval.csv",
        {"judge": PAPER_JUDGE, "generator": "text_davinci_003 (a) vs absolute_alpaca_7b_64 (b)"}),
}

READERS = {
    "instructions": d.read_instructions,
    "generations": d.read_generations,
    "responses_csv": d.read_responses_csv,
    "pairs_csv": d.read_pairs_csv,
    "ratings": d.read_ratings_csv,
    "rankings": d.read_rankings_csv,
    "model_outputs": d.read_model_outputs,
    "table": d.read_table,
}

WRITERS = {
    "instructions": d.write_instructions_json,
    "generations": d.write_generations,
    "responses_csv": d.write_responses_csv,
    "pairs_csv": d.write_pairs_csv,
    "ratings": d.write_ratings_csv,
    "rankings": d.write_rankings_csv,
    "model_outputs": d.write_model_outputs,
    "table": d.write_table,
}


def convert_original(original: Path | str | None = None, out: Path | str | None = None) -> pd.DataFrame:
    """Convert every vendored original file; return a summary (one row per output table)."""
    original = Path(original) if original else data_dir() / "original"
    out = Path(out) if out else data_dir() / "canonical"
    rows = []
    for name, (layout, rel, extra) in _ORIGINALS.items():
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
        d.write_table(df, target)
        rows.append({"table": target.name, "layout": layout, "source": f"original/{rel}", "rows_read": n_read,
                     "rows_written": len(df), "duplicates_dropped": dropped})
    summary = pd.DataFrame(rows)
    d.atomic_write_text(out / "MANIFEST.json", json.dumps(rows, indent=1) + "\n")
    return summary


def convert_file(src: Path | str, dst: Path | str, src_layout: str, dst_layout: str = "table") -> int:
    """Convert one file between layouts (see ``READERS``/``WRITERS``); return the number of rows."""
    if src_layout not in READERS:
        raise ValueError(f"unknown input layout '{src_layout}'; choose from {', '.join(READERS)}")
    if dst_layout not in WRITERS:
        raise ValueError(f"unknown output layout '{dst_layout}'; choose from {', '.join(WRITERS)}")
    df = READERS[src_layout](src)
    WRITERS[dst_layout](df, dst)
    return len(df)


def add_cli(sub) -> None:
    p = sub.add_parser("convert-original", help="convert the vendored original data into data/canonical")
    p.add_argument("--original", default=None, help="folder of original files (default data/original)")
    p.add_argument("--out", default=None, help="output folder (default data/canonical)")
    p.set_defaults(func=lambda a: print(convert_original(a.original, a.out).to_string(index=False)))

    p = sub.add_parser("convert", help="convert one file between an original layout and a canonical table")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--from", dest="src_layout", required=True, choices=sorted(READERS))
    p.add_argument("--to", dest="dst_layout", default="table", choices=sorted(WRITERS),
                   help="output layout (default: canonical table, .jsonl or .parquet by extension)")
    p.set_defaults(func=lambda a: print(f"wrote {convert_file(a.src, a.dst, a.src_layout, a.dst_layout)} rows to {a.dst}"))
