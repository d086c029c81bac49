"""Cross-protocol agreement, computed once: every pair of protocols on the pairs they both imply.

For protocols X and Y, the pairs both imply (same instruction, same two responses; ids sorted, so
``a`` always means the same response) give a 3×3 matrix (X says a / b / equal × Y says a / b /
equal), the share of pairs where they agree (Wilson 95% interval) and Cohen's κ. Per protocol: judge
calls, the share of calls without a valid answer, pairs implied, tie rate (``equal`` among them),
position bias (how often the first-shown response wins, against chance), structured share (answers
that came as JSON), tokens and dollars (the judge's price × every call's tokens, cached calls
included: what the protocol costs, not what this run paid), and **agreement with the reference
protocol per dollar** (the reference is ``pairwise-3way`` when collected: the paper's pairwise
protocol).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..core import costs
from ..core.findings import Estimate, Findings
from ..core.stats import cohen_kappa, wilson
from .base import Protocol

LABELS = ["a", "b", "equal"]
KEYS = ["instruction_id", "response_id_1", "response_id_2"]
REFERENCE = "pairwise-3way"


@dataclass
class ProtocolRun:
    """One protocol's answers: its verdicts table and the pairs they imply; ``judge`` prices the calls."""
    protocol: Protocol
    verdicts: pd.DataFrame
    judge: str = ""
    pairs: pd.DataFrame = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        if self.pairs is None:
            self.pairs = self.protocol.pairs(self.verdicts)

    @property
    def name(self) -> str:
        return self.protocol.name


def agreement_matrix(x: pd.DataFrame, y: pd.DataFrame) -> pd.DataFrame:
    """Counts of (X's decision, Y's decision) on the pairs both imply; rows X, columns Y, a / b / equal."""
    both = x[KEYS + ["decision"]].drop_duplicates(KEYS).merge(
        y[KEYS + ["decision"]].drop_duplicates(KEYS), on=KEYS, suffixes=("_x", "_y"))
    m = pd.crosstab(pd.Categorical(both["decision_x"], LABELS), pd.Categorical(both["decision_y"], LABELS),
                    dropna=False)
    m = m.reindex(index=LABELS, columns=LABELS, fill_value=0).astype(int)
    m.index.name, m.columns.name = "X", "Y"
    return m


def agreement(matrix: pd.DataFrame) -> dict:
    """``n``, ``agreement`` (diagonal share) with its Wilson 95% interval, and Cohen's κ of a 3×3 matrix."""
    m = np.asarray(matrix, dtype=float)
    n = int(m.sum())
    agree = int(np.trace(m))
    low, high = wilson(agree, n) if n else (float("nan"), float("nan"))
    return {"n_pairs": n, "agreement": agree / n if n else float("nan"), "agreement_low": low,
            "agreement_high": high, "kappa": cohen_kappa(m) if n else float("nan")}


def _cost(judge: str, pt: int, ct: int) -> float:
    c = costs.cost(judge, pt, ct) if judge else None
    return float("nan") if c is None else float(c)


def protocol_table(runs: dict[str, ProtocolRun], reference: str | None = None) -> pd.DataFrame:
    """One row per protocol (see the module notes)."""
    reference = reference if reference is not None else (REFERENCE if REFERENCE in runs else None)
    rows = []
    for name, run in runs.items():
        v = run.verdicts
        valid = v["valid"].fillna(False).astype(bool) if len(v) else pd.Series(dtype=bool)
        pt = int(pd.to_numeric(v.get("prompt_tokens"), errors="coerce").fillna(0).sum()) if len(v) else 0
        ct = int(pd.to_numeric(v.get("completion_tokens"), errors="coerce").fillna(0).sum()) if len(v) else 0
        calls = len(v) * (2 if run.protocol.unit == "pair" and "verdict_12" in v and
                          bool(run.protocol.spec.get("both_orders", True)) else 1)
        bias = run.protocol.position_bias(v) or {}
        fmt = v.get("verdict_format", pd.Series(dtype=object)).astype(str)
        row = {"protocol": name, "unit": run.protocol.unit, "calls": calls, "items": len(v),
               "invalid_rate": float((~valid).mean()) if len(v) else float("nan"),
               "structured_share": float(fmt.str.startswith("json").mean()) if len(v) else float("nan"),
               "pairs": len(run.pairs),
               "tie_rate": float((run.pairs["decision"] == "equal").mean()) if len(run.pairs) else float("nan"),
               "first_shown_rate": bias.get("first_shown_rate", float("nan")),
               "position_chance": bias.get("chance", float("nan")),
               "prompt_tokens": pt, "completion_tokens": ct, "cost_usd": _cost(run.judge, pt, ct)}
        if reference and name != reference and reference in runs:
            a = agreement(agreement_matrix(run.pairs, runs[reference].pairs))
            row["agreement_with_reference"] = a["agreement"]
        elif reference == name:
            row["agreement_with_reference"] = 1.0
        else:
            row["agreement_with_reference"] = float("nan")
        cost = row["cost_usd"]
        row["agreement_per_dollar"] = (row["agreement_with_reference"] / cost
                                       if cost and not math.isnan(cost) and cost > 0 else float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def compare(runs: dict[str, ProtocolRun], reference: str | None = None) -> dict:
    """``{"matrices": {(X, Y): 3×3}, "agreement": one row per protocol pair, "protocols": per protocol}``."""
    names = list(runs)
    matrices, rows = {}, []
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            m = agreement_matrix(runs[x].pairs, runs[y].pairs)
            matrices[(x, y)] = m
            rows.append({"protocol_x": x, "protocol_y": y, **agreement(m)})
    cols = ["protocol_x", "protocol_y", "n_pairs", "agreement", "agreement_low", "agreement_high", "kappa"]
    return {"matrices": matrices, "agreement": pd.DataFrame(rows, columns=cols),
            "protocols": protocol_table(runs, reference)}


def findings(runs: dict[str, ProtocolRun], judge: str = "", reference: str | None = None) -> Findings:
    """Stage 09's findings: the comparison as a :class:`~sflib.core.findings.Findings`."""
    res = compare(runs, reference)
    f = Findings(stage="09", title="Feedback protocols compared on the pairs they both imply")
    per = res["protocols"]
    f.counts = {f"{r.protocol}: judge calls": int(r.calls) for r in per.itertuples()}
    f.tables = {"agreement": res["agreement"], "protocols": per}
    for r in res["agreement"].itertuples():
        f.estimates.append(Estimate(f"agreement {r.protocol_x} vs {r.protocol_y}", 100 * r.agreement,
                                    100 * r.agreement_low, 100 * r.agreement_high, n=r.n_pairs, unit="%",
                                    method="Wilson 95%", note=f"κ = {r.kappa:.2f}" if not math.isnan(r.kappa) else ""))
    for r in res["agreement"].itertuples():
        if r.n_pairs == 0:
            f.notes.append(f"{r.protocol_x} and {r.protocol_y} imply no pair in common: no agreement computed.")
        elif r.n_pairs < 30:
            f.notes.append(f"{r.protocol_x} vs {r.protocol_y}: only {r.n_pairs} pairs in common; the interval is wide.")
    for r in per.itertuples():
        if r.invalid_rate > 0:
            f.notes.append(f"{r.protocol}: {100 * r.invalid_rate:.0f}% of its answers could not be read (kept, left "
                           "out of the pairs).")
    if judge.startswith("recorded") or "smollm2" in judge:
        f.notes.append(f"judge {judge}: " + ("recorded answers exist only for the paper's two protocols."
                                              if judge.startswith("recorded") else
                                              "SmolLM2-135M is far too small to judge well: these numbers only "
                                              "exercise the plumbing."))
    agree = [f"{r.protocol_x} and {r.protocol_y} agree on {100 * r.agreement:.1f}% of {r.n_pairs} pairs"
             + (f" (κ {r.kappa:.2f})" if not math.isnan(r.kappa) else "")
             for r in res["agreement"].itertuples() if r.n_pairs]
    f.headline = ("; ".join(agree[:3]) + (f"; and {len(agree) - 3} more pairs of protocols (below)" if len(agree) > 3
                                          else "") + ".") if agree else \
        "No two protocols imply a pair in common: no agreement to compute."
    f.matrices = res["matrices"]  # type: ignore[attr-defined]
    return f
