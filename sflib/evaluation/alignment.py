"""Stage 07, alignment: a policy's AlpacaEval ``model_outputs`` matched to the reference's by instruction.

Also the key every judgment is matched on (:func:`instruction_key`: instruction + input, CRLF and
surrounding whitespace normalised). Nothing is dropped silently: :class:`Alignment` counts the
instructions of the evaluation set that cannot be evaluated (``dropped``) and the rows outside it
(``ignored``).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..core import data as sfdata
from .. import io as sfio


def _norm_text(text: object) -> str:
    """Text compared for identity: CRLF -> LF, surrounding whitespace removed (the original CSVs
    were written with CRLF line ends on some rows)."""
    return str(text).replace("\r\n", "\n").replace("\r", "\n").strip()


def instruction_key(instruction: object, input: object = "") -> str:
    """The key outputs and judgments are matched on: instruction (+ input when there is one)."""
    return sfdata.make_id(_norm_text(instruction), sfdata.clean_input(input))


def _keys(df: pd.DataFrame) -> list[str]:
    inputs = df["input"] if "input" in df else [""] * len(df)
    return [instruction_key(i, x) for i, x in zip(df["instruction"], inputs)]


def _add(counts: dict[str, int], reason: str, k: int = 1) -> None:
    if k:
        counts[reason] = counts.get(reason, 0) + int(k)


@dataclass
class Alignment:
    """Policy and reference outputs matched by instruction.

    ``items``: one row per instruction of the evaluation set (the reference's instructions, in the
    selected datasets) with ``key, instruction, input, dataset, reference_output, policy_output,
    reason`` — ``reason`` is '' when both outputs are usable, else why the instruction cannot be
    evaluated (``dropped`` counts these). ``ignored`` counts rows outside the evaluation set.
    """

    items: pd.DataFrame
    dropped: dict[str, int]
    ignored: dict[str, int]
    policy: str = "policy"
    reference: str = "reference"

    @property
    def pairs(self) -> pd.DataFrame:
        """The instructions with both outputs usable."""
        return self.items[self.items["reason"] == ""].reset_index(drop=True)

    def report(self) -> pd.DataFrame:
        """Every count behind the evaluation set, as a table (what, count)."""
        rows = [("reference instructions in the evaluation set", len(self.items)),
                ("usable (both outputs present and non-empty)", len(self.pairs))]
        rows += [(f"dropped: {k}", v) for k, v in self.dropped.items()]
        rows += [(f"ignored: {k}", v) for k, v in self.ignored.items()]
        return pd.DataFrame(rows, columns=["what", "count"])


def _as_outputs(outputs: pd.DataFrame | os.PathLike | str) -> tuple[pd.DataFrame, str]:
    if isinstance(outputs, (str, os.PathLike)):
        df = sfio.read_model_outputs(outputs)
        df = df[sfdata.MODEL_OUTPUT_COLUMNS + (["input"] if "input" in df else [])]
        name = Path(outputs).stem
    else:
        df = outputs.copy()
        for col in ("instruction", "output"):
            if col not in df:
                raise ValueError(f"model outputs frame has no '{col}' column (columns: {', '.join(map(str, df.columns))})")
        name = ""
    if "generator" in df and len(df) and str(df["generator"].iloc[0]):
        name = str(df["generator"].iloc[0])
    for col in ("generator", "dataset"):
        if col not in df:
            df[col] = ""
    df["input"] = [sfdata.clean_input(x) for x in df["input"]] if "input" in df else ""
    df["output"] = ["" if (x is None or (isinstance(x, float) and math.isnan(x))) else str(x) for x in df["output"]]
    df["key"] = _keys(df)
    return df.reset_index(drop=True), name


def align_outputs(policy_outputs: pd.DataFrame | os.PathLike | str,
                  reference_outputs: pd.DataFrame | os.PathLike | str, *,
                  datasets: Sequence[str] | None = None, policy: str | None = None,
                  reference: str | None = None) -> Alignment:
    """Match a policy's ``model_outputs`` with the reference's by instruction (+ input).

    The evaluation set is the reference's instructions (those in ``datasets`` when given; the
    paper's are :data:`PAPER_DATASETS`). Counted, never silently dropped:

    - dropped (instructions of the evaluation set that cannot be evaluated): no policy output,
      empty policy output, empty reference output;
    - ignored (rows outside the evaluation set): duplicate instructions in either file (the first
      is kept), policy outputs whose instruction the reference lacks, reference instructions
      outside ``datasets``.

    Arguments are AlpacaEval JSON paths or frames with ``instruction, output`` (``dataset``,
    ``generator``, ``input`` optional). ``policy``/``reference`` name the two (default: the
    ``generator`` field, else the file name).
    """
    pol, pol_name = _as_outputs(policy_outputs)
    ref, ref_name = _as_outputs(reference_outputs)
    policy = policy or pol_name or "policy"
    reference = reference or ref_name or "reference"
    ignored: dict[str, int] = {}
    _add(ignored, "duplicate instruction in reference outputs (first kept)", int(ref["key"].duplicated().sum()))
    _add(ignored, "duplicate instruction in policy outputs (first kept)", int(pol["key"].duplicated().sum()))
    ref = ref.drop_duplicates("key", keep="first")
    pol = pol.drop_duplicates("key", keep="first")
    all_ref_keys = set(ref["key"])
    if datasets is not None:
        inside = ref["dataset"].isin(list(datasets))
        for ds, k in ref.loc[~inside, "dataset"].value_counts().items():
            _add(ignored, f"reference instruction outside the selected datasets ({ds or 'no dataset'})", int(k))
        _add(ignored, "policy output for a reference instruction outside the selected datasets",
             int(pol["key"].isin(set(ref.loc[~inside, "key"])).sum()))
        ref = ref[inside]
    _add(ignored, "policy output for an instruction the reference lacks", int((~pol["key"].isin(all_ref_keys)).sum()))
    pol_by_key = pol.set_index("key")
    items = pd.DataFrame({
        "key": ref["key"].to_numpy(), "instruction": ref["instruction"].to_numpy(),
        "input": ref["input"].to_numpy(),
        "dataset": [d or pol_by_key["dataset"].get(k, "") for d, k in zip(ref["dataset"], ref["key"])],
        "reference_output": ref["output"].to_numpy(),
        "policy_output": pd.Series([pol_by_key["output"].get(k) for k in ref["key"]], dtype=object),
    })
    reasons = []
    for p, r in zip(items["policy_output"], items["reference_output"]):
        if not isinstance(p, str):
            reasons.append("no policy output")
        elif not p.strip():
            reasons.append("empty policy output")
        elif not r.strip():
            reasons.append("empty reference output")
        else:
            reasons.append("")
    items["reason"] = reasons
    dropped: dict[str, int] = {}
    for r in items["reason"]:
        if r:
            _add(dropped, r)
    return Alignment(items=items.reset_index(drop=True), dropped=dropped, ignored=ignored,
                     policy=policy, reference=reference)

