"""Stage 07 — win rate of a policy against a reference under the rating and the ranking protocol.

- **Rating protocol**: the same judge rates the policy's and the reference's output for each
  instruction (1–7); win = 1 if the policy's score is higher, 0.5 if equal, 0 otherwise.
- **Ranking protocol**: one pairwise judgment with the reference as (a) and the policy as (b),
  asked in both orders (stage 03); win = 1 for ``b``, 0.5 for ``equal``, 0 for ``a``.

This module is the orchestrating layer and re-exports the pieces, so ``from sflib import evaluation``
gives every name:

- :mod:`sflib.evaluation.alignment` — :func:`align_outputs` matches two AlpacaEval ``model_outputs``
  files by instruction (:class:`Alignment`, :func:`instruction_key`);
- :mod:`sflib.evaluation.winrate` — the arithmetic on plain frames of judgments: :func:`winrate_from_ratings`,
  :func:`winrate_from_rankings`, :func:`no_judgments`, :class:`WinRate` (hard or soft verdicts);
- :mod:`sflib.evaluation.analysis` — :func:`compare_policies`, :func:`results_table`,
  :func:`by_dataset_table`, :func:`mean_lengths`, :func:`length_analysis`;
- :mod:`sflib.evaluation.lc_winrate` — AlpacaEval 2's length-controlled win rate (``WinRate.lc_winrate``);
- :mod:`sflib.evaluation.original_rules` — :func:`original_winrate_from_ratings` /
  :func:`original_winrate_from_rankings` (the rules of the original ``calc_win_rate_from_*_eval.py``)
  and :func:`original_vs_ours`;
- :mod:`sflib.core.stats` — :func:`ci_sem` (1.96·SEM, the paper's), :func:`bootstrap_ci`.

Here: :func:`evaluate`, the thin judge-driven layer that calls ``sflib.feedback.ratings.rate`` and
``sflib.feedback.rankings.rank`` (cached, resumable and cost-accounted through their store);
:func:`winrates_from_recorded`, the win rates from recorded feedback files offline. The ``winrate``
command is in :mod:`sflib.evaluation.cli`.

Nothing is dropped silently. Every :class:`WinRate` has the evaluation set it was computed on
(``n_items`` instructions), ``n`` of them counted, and ``dropped`` = {reason: count} for the rest,
so that ``n + sum(dropped.values()) == n_items``; rows that were not part of the evaluation set
(duplicates, instructions the reference lacks, datasets left out) are in ``ignored``.
Intervals: ``ci_sem`` = 1.96·SEM (the paper's, half-width, ×100) and a percentile bootstrap over
instructions (``ci_low``, ``ci_high``; the policy's and the reference's judgments of an
instruction are resampled together).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..core import catalog
from ..core import data as sfdata
from ..consistency.compare import load_rankings, load_ratings
from .lc_winrate import LCResult, with_instruction_difficulty
from .original_rules import (OriginalWinRate, original_vs_ours,
                             original_winrate_from_rankings, original_winrate_from_ratings)
from .alignment import Alignment, _add, _norm_text, align_outputs, instruction_key
from ..judges import get_judge
from ..feedback.soft_verdicts import VERDICTS  # re-exported
from ..core.stats import N_BOOT, bootstrap_ci, ci_sem
from .winrate import (DECISION_WIN, PROTOCOLS, WinRate, no_judgments, winrate_from_rankings,
                      winrate_from_ratings)
from .analysis import (LENGTH_BUCKETS, Comparison, by_dataset_table, compare_policies, length_analysis,
                       mean_lengths, results_table)

#: the AlpacaEval subsets the paper evaluated on (553 instructions; ``selfinstruct`` left out)
PAPER_DATASETS = ("helpful_base", "koala", "oasst", "vicuna")


#: :func:`vendored_paths` key -> :mod:`sflib.core.catalog` role
VENDORED_ROLES = {
    "reference": "eval.reference_outputs",
    "ratings_rm": "eval.ratings_rm_outputs",
    "rankings_rm": "eval.rankings_rm_outputs",
    "reference_ratings": "eval.ratings.reference",
    "ratings_rm_ratings": "eval.ratings.ratings_rm",
    "ratings_rm_rankings": "eval.rankings.reference_vs_ratings_rm",
}


def vendored_paths() -> dict[str, Path]:
    """The paper's evaluation files as released under ``data/original/inference_model_outputs``
    (from :mod:`sflib.core.catalog`)."""
    return {key: catalog.path(role, original=True) for key, role in VENDORED_ROLES.items()}


# ----------------------------------------------------------------------------- recorded judgments (offline)

def winrates_from_recorded(policy_outputs: pd.DataFrame | os.PathLike | str,
                           reference_outputs: pd.DataFrame | os.PathLike | str, *,
                           policy_ratings: pd.DataFrame | os.PathLike | str | None = None,
                           reference_ratings: pd.DataFrame | os.PathLike | str | None = None,
                           rankings: pd.DataFrame | os.PathLike | str | None = None,
                           datasets: Sequence[str] | None = PAPER_DATASETS, policy: str | None = None,
                           reference: str | None = None, judge: str = "recorded", n_boot: int = N_BOOT,
                           seed: int = 0, verdicts: str = "hard") -> dict[str, WinRate]:
    """Both protocols' win rates from recorded feedback, on the outputs' evaluation set.

    Ratings files: the original headerless ``instruction,input,output,score`` CSVs (or canonical
    ``.jsonl`` / ``.parquet`` tables, or frames); rankings: headerless
    ``instruction,input,output1,output2,feedback`` (or canonical) with the reference as output1 = (a).
    A protocol whose files are not given gets a result with nothing counted and every instruction
    dropped as "no recorded judgment" — nothing is made up.
    A recorded judgment of a different text than the output being evaluated is dropped.
    ``verdicts="soft"`` reads ``expected_score`` / ``p_a`` where the (canonical) tables have them.
    """
    al = align_outputs(policy_outputs, reference_outputs, datasets=datasets, policy=policy, reference=reference)

    def load(x, reader):
        return reader(x) if isinstance(x, (str, os.PathLike)) else x

    out: dict[str, WinRate] = {}
    if policy_ratings is not None and reference_ratings is not None:
        out["rating"] = winrate_from_ratings(load(policy_ratings, load_ratings),
                                             load(reference_ratings, load_ratings), items=al,
                                             judge=judge, n_boot=n_boot, seed=seed, verdicts=verdicts)
    else:
        missing = "policy" if policy_ratings is None else "reference"
        if policy_ratings is None and reference_ratings is None:
            missing = "policy and reference"
        out["rating"] = no_judgments(al, "rating", reason=f"no recorded {missing} rating", judge=judge)
    if rankings is not None:
        out["ranking"] = winrate_from_rankings(load(rankings, load_rankings), items=al, judge=judge,
                                               n_boot=n_boot, seed=seed, verdicts=verdicts)
    else:
        out["ranking"] = no_judgments(al, "ranking", reason="no recorded ranking", judge=judge)
    return out


# ----------------------------------------------------------------------------- judge-driven

@dataclass
class Evaluation:
    """One policy evaluated against a reference with a judge: the alignment and a :class:`WinRate`
    per protocol, plus the judge's accounting (``stats`` per protocol from rate()/rank())."""

    policy: str
    reference: str
    judge: str
    alignment: Alignment
    results: dict[str, WinRate]
    stats: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        return results_table(self.results.values())

    @property
    def lc_winrates(self) -> dict[str, float]:
        """protocol -> length-controlled win rate ×100."""
        return {p: r.lc_winrate for p, r in self.results.items()}

    def summary(self) -> dict[str, Any]:
        return {"policy": self.policy, "reference": self.reference, "judge": self.judge,
                "results": {p: r.summary() for p, r in self.results.items()},
                "alignment": {"dropped": self.alignment.dropped, "ignored": self.alignment.ignored},
                "stats": _jsonable(self.stats)}


def with_difficulty(evaluations: dict[str, "Evaluation"]) -> dict[str, "Evaluation"]:
    """The evaluations (policy -> :class:`Evaluation`, same reference) with every result's length-controlled
    win rate refitted with AlpacaEval's instruction-difficulty term, estimated for each policy from the
    other policies' verdicts (:func:`sflib.evaluation.lc_winrate.with_instruction_difficulty`); with one policy the
    minimal formula stays."""
    flat = [(name, proto, r) for name, ev in evaluations.items() for proto, r in ev.results.items()]
    refit = with_instruction_difficulty([r for _, _, r in flat])
    out = {name: Evaluation(policy=ev.policy, reference=ev.reference, judge=ev.judge, alignment=ev.alignment,
                            results=dict(ev.results), stats=ev.stats) for name, ev in evaluations.items()}
    for (name, proto, _), r in zip(flat, refit):
        out[name].results[proto] = r
    return out


def _jsonable(obj):
    try:
        json.dumps(obj)
        return obj
    except TypeError:
        return json.loads(json.dumps(obj, default=str))


def _align_back(asked: pd.DataFrame, got: pd.DataFrame, text_cols: Sequence[str]) -> pd.DataFrame:
    """The judged rows in the order asked: row by row when the stage kept order, else by texts."""
    if len(got) == len(asked) and all(
            c in got and [_norm_text(x) for x in got[c]] == [_norm_text(x) for x in asked[c]] for c in text_cols):
        return got.reset_index(drop=True)
    by = {}
    for i, rec in enumerate(got.to_dict("records")):
        by.setdefault(tuple(_norm_text(rec[c]) for c in ["instruction", *text_cols]), i)
    idx = [by.get(tuple(_norm_text(rec[c]) for c in ["instruction", *text_cols])) for rec in asked.to_dict("records")]
    rows = [got.iloc[i].to_dict() if i is not None else {"status": "not returned by the judging stage"} for i in idx]
    return pd.DataFrame(rows)


def evaluate(policy_outputs: pd.DataFrame | os.PathLike | str, reference_outputs: pd.DataFrame | os.PathLike | str,
             judge, protocols: Sequence[str] = PROTOCOLS, store=None, *, datasets: Sequence[str] | None = None,
             policy: str | None = None, reference: str | None = None, limit: int | None = None,
             n_boot: int = N_BOOT, seed: int = 0, verdicts: str = "hard", **judge_kwargs) -> Evaluation:
    """Evaluate a policy's ``model_outputs`` against a reference's with ``judge`` under the protocols.

    ``judge`` is a :class:`sflib.judges.base.Judge` or a name for ``sflib.judges.get_judge``.
    Rating protocol: ``sflib.feedback.ratings.rate`` on the reference's and the policy's outputs (one table,
    so the same judge and prompt rate both). Ranking protocol: ``sflib.feedback.rankings.rank`` with the
    reference as response1 = (a) and the policy as response2 = (b), both orders. ``store`` is
    passed to both, so a re-run resumes from the cache and pays nothing twice. ``limit`` keeps the
    first n usable instructions (the rest are dropped as "beyond the limit", counted).
    ``verdicts="soft"`` uses the judge's ``expected_score`` / ``p_a`` where it returned them
    (:mod:`sflib.feedback.soft_verdicts`). Each result carries its length-controlled win rate (``lc_winrate``).
    ``judge_kwargs`` go to rate() / rank() (e.g. ``progress``).
    """
    if isinstance(judge, str):
        from ..judges import get_judge
        judge = get_judge(judge)
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}; use 'rating' and/or 'ranking'")
    al = align_outputs(policy_outputs, reference_outputs, datasets=datasets, policy=policy, reference=reference)
    if limit is not None:
        usable = np.flatnonzero(al.items["reason"].to_numpy() == "")
        beyond = usable[limit:]
        al.items.loc[beyond, "reason"] = "beyond the limit"
        _add(al.dropped, "beyond the limit", len(beyond))
    pairs = al.pairs
    jname = getattr(judge, "name", str(judge))
    results, all_stats = {}, {}
    if not len(pairs):   # nothing to ask the judge: every instruction is dropped, with its reason
        empty = pd.DataFrame({"instruction": pd.Series(dtype=str), "score": pd.Series(dtype=float),
                              "decision": pd.Series(dtype=object)})
        results = {"rating": winrate_from_ratings(empty, empty, items=al, judge=jname, n_boot=n_boot, seed=seed),
                   "ranking": winrate_from_rankings(empty, items=al, judge=jname, n_boot=n_boot, seed=seed)}
        return Evaluation(policy=al.policy, reference=al.reference, judge=jname, alignment=al,
                          results={p: results[p] for p in protocols}, stats={})
    if "rating" in protocols:
        from ..feedback.ratings import rate
        asked = pd.DataFrame({
            "instruction": list(pairs["instruction"]) * 2, "input": list(pairs["input"]) * 2,
            "response": list(pairs["reference_output"]) + list(pairs["policy_output"]),
            "dataset": list(pairs["dataset"]) * 2})
        asked = sfdata.add_ids(asked)
        got = rate(asked, judge, store=store, **judge_kwargs)
        all_stats["rating"] = got.attrs.get("stats", {})
        got = _align_back(asked, got, ["response"])
        n = len(pairs)
        ref_j = got.iloc[:n].reset_index(drop=True).assign(instruction=pairs["instruction"].to_numpy(),
                                                            input=pairs["input"].to_numpy())
        pol_j = got.iloc[n:].reset_index(drop=True).assign(instruction=pairs["instruction"].to_numpy(),
                                                            input=pairs["input"].to_numpy())
        for j in (ref_j, pol_j):
            if "score" not in j:
                j["score"] = float("nan")
            if "valid" in j:
                j.loc[~j["valid"].fillna(False).astype(bool), "score"] = float("nan")
        results["rating"] = winrate_from_ratings(pol_j, ref_j, items=al, judge=jname, n_boot=n_boot, seed=seed,
                                                 verdicts=verdicts)
    if "ranking" in protocols:
        from ..feedback.rankings import rank
        asked = sfdata.add_ids(pd.DataFrame({
            "instruction": pairs["instruction"], "input": pairs["input"],
            "response1": pairs["reference_output"], "response2": pairs["policy_output"], "dataset": pairs["dataset"]}))
        got = rank(asked, judge, store=store, both_orders=True, **judge_kwargs)
        all_stats["ranking"] = got.attrs.get("stats", {})
        got = _align_back(asked, got, ["response1", "response2"])
        got = got.assign(instruction=pairs["instruction"].to_numpy(), input=pairs["input"].to_numpy())
        if "decision" not in got:
            got["decision"] = None
        results["ranking"] = winrate_from_rankings(got, items=al, judge=jname, n_boot=n_boot, seed=seed,
                                                   verdicts=verdicts)
    return Evaluation(policy=al.policy, reference=al.reference, judge=jname, alignment=al, results=results,
                      stats=all_stats)
