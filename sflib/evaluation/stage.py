"""Stage 07 of a study: evaluate notebook 06's best-of-n outputs against the reference under both
protocols with the study's judge, and save the stage's output (``07_evaluation/``).

:func:`run` does what notebook 07 did in its cells: it picks the judge (the paper's recorded GPT-3.5
judgments when the study seeds ``evaluation`` from data, else ``evaluation.judge``), aligns each
policy's outputs with the reference's, judges them (cached and resumable through the annotation
store with a real judge: nothing is paid twice) and saves ``judgments.jsonl`` and ``winrates.json``
with the manifest counts. :mod:`sflib.evaluation.findings` turns the result into the stage's findings.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from . import Evaluation, align_outputs, evaluate
from .winrate import WinRate, _result

#: the paper's recorded evaluation judgments a seeded study replays
RECORDED = ("recorded_ratings_reference", "recorded_ratings_ratings_rm", "recorded_rankings_reference_vs_ratings_rm")
RECORDED_LABEL = "gpt-3.5-turbo (paper), recorded judgments (partial)"


@dataclass
class EvaluationRun:
    """What :func:`run` computed: one :class:`Evaluation` per policy and the bookkeeping around it."""

    study: Any
    evaluations: dict[str, Evaluation]
    alignments: dict
    policy_outputs: dict[str, pd.DataFrame]
    reference_outputs: pd.DataFrame
    reference: str
    judge: str
    recorded: bool
    not_evaluated: dict[str, str] = field(default_factory=dict)   # policy -> why
    counts: dict = field(default_factory=dict)                     # the manifest counts
    n_boot: int = 2000
    seed: int = 0

    @property
    def results(self) -> list[WinRate]:
        return [r for e in self.evaluations.values() for r in e.results.values()]


def reasons(text: str, recorded: bool) -> str:
    """A recorded judge has no answer rather than a failed one: say "not recorded"."""
    return text.replace("judgment failed", "judgment not recorded") if recorded else text


def record(evaluations: dict[str, Evaluation], recorded: bool) -> tuple[pd.DataFrame, dict]:
    """The stage's ``judgments`` table (every judged item, with policy and protocol) and manifest counts:
    instructions counted / invalid / failed per protocol and why, and what the judge cost. For a recorded
    judge, an instruction without a recording is "not recorded", never "failed"."""
    results = [r for e in evaluations.values() for r in e.results.values()]
    judgments = (pd.concat([r.items.assign(policy=r.policy, protocol=r.protocol) for r in results], ignore_index=True)
                 if results else pd.DataFrame())
    why: dict = {}
    for r in results:
        for text, k in r.dropped.items():
            key = f"{r.protocol}: {reasons(text, recorded)}"
            why[key] = why.get(key, 0) + k
    n, valid = sum(r.n_items for r in results), sum(r.n for r in results)
    failed = 0 if recorded else sum(k for text, k in why.items() if "failed" in text)
    cost = sum(float(st.get("cost_usd") or 0) for e in evaluations.values() for st in e.stats.values())
    counts = {"n": n, "valid": valid, "invalid": n - valid - failed, "failed": failed, "reasons": why,
              "cost_usd": round(cost, 6)}
    if not valid:
        counts["reason"] = "no policy outputs to evaluate" if not results else "no judgment could be counted"
    return judgments, counts


def _judge(study, recorded: bool):
    from ..judges import get_judge

    if recorded:
        files = ",".join(str(study.path_of("evaluation", f"{t}.jsonl")) for t in RECORDED)
        return get_judge("recorded:" + files), RECORDED_LABEL
    judge = get_judge(study.config.evaluation.judge)
    return judge, judge.name


def run(study, *, quick: bool = False, n_instructions: int | None = None, n_boot: int = 2000,
        save: bool = True) -> EvaluationRun:
    """Evaluate the study's best-of-n outputs under its protocols and (``save``) write ``07_evaluation/``.

    ``quick``: at most 200 bootstrap resamples and, with a real judge, 20 instructions per policy.
    ``n_instructions``: with a real judge, judge only the first N instructions of each policy.
    """
    from ..study.acquire import quiet_retry_warning
    from ..study.findings import save_stage

    cfg = study.config.evaluation
    datasets = study.config.best_of_n.datasets
    m06 = study.check("best_of_n")
    files = m06.get("files", [])
    reference_outputs = study.read("best_of_n", "reference_outputs")
    policy_outputs = {f"{kind}-RM": study.read("best_of_n", f"{kind}_outputs") for kind in cfg.policies
                      if f"{kind}_outputs.json" in files}
    why06 = (m06.get("counts") or {}).get("reason")
    not_evaluated = {f"{kind}-RM": "notebook 06 saved no outputs for it" + (f": {why06}" if why06 else "")
                     for kind in cfg.policies if f"{kind}-RM" not in policy_outputs}
    recorded = "evaluation" in study.config.seeded_from_data
    judge, label = _judge(study, recorded)
    if quick:
        n_boot = min(n_boot, 200)
        n_instructions = 20 if (not recorded and n_instructions is None) else n_instructions
    reference = reference_outputs["generator"].iloc[0] if len(reference_outputs) else "reference"
    alignments = {name: align_outputs(out, reference_outputs, datasets=datasets, policy=name, reference=reference)
                  for name, out in policy_outputs.items()}
    quiet = quiet_retry_warning() if recorded else contextlib.nullcontext()  # recorded: nothing to retry
    with quiet:
        evaluations = {name: evaluate(out, reference_outputs, judge, protocols=tuple(cfg.protocols),
                                      store=False if recorded else study.store_path, datasets=datasets, policy=name,
                                      reference=reference, limit=None if recorded else n_instructions,
                                      n_boot=n_boot, seed=study.config.seed, progress=False,
                                      verdicts=cfg.verdicts, mode="online" if recorded else cfg.mode)
                       for name, out in policy_outputs.items()}
    for e in evaluations.values():
        for r in e.results.values():
            r.dropped = {reasons(k, recorded): v for k, v in r.dropped.items()}
    judgments, counts = record(evaluations, recorded)
    if save:
        results = [r for e in evaluations.values() for r in e.results.values()]
        kept = {t: study.read("evaluation", t) for t in RECORDED} if recorded else {}  # keep the seeded recordings
        save_stage(study, "evaluation", tables={**kept, "judgments": judgments},
                   json_files={"winrates.json": {"judge": label, "results": [r.summary() for r in results]}},
                   counts=counts, inputs=["best_of_n"], judge=label, notes=counts.get("reason"),
                   seeded_from=(study.manifest("evaluation") or {}).get("seeded_from") if recorded else None)
    return EvaluationRun(study=study, evaluations=evaluations, alignments=alignments, policy_outputs=policy_outputs,
                         reference_outputs=reference_outputs, reference=reference, judge=label, recorded=recorded,
                         not_evaluated=not_evaluated, counts=counts, n_boot=n_boot, seed=study.config.seed)


def load(study, *, n_boot: int = 2000) -> EvaluationRun:
    """The stage as :func:`run` left it, read back from ``07_evaluation/`` (no judge is asked): the win rates
    are recomputed from the saved ``judgments`` (every judged item with its win value and both texts), so
    :func:`sflib.evaluation.findings.findings` gives the notebook's numbers from the saved stage alone."""
    import json

    m = study.check("evaluation")
    saved = json.loads(study.path_of("evaluation", "winrates.json").read_text(encoding="utf-8"))
    recorded = "evaluation" in study.config.seeded_from_data
    judgments = study.read("evaluation", "judgments")
    reference_outputs = study.read("best_of_n", "reference_outputs")
    reference = reference_outputs["generator"].iloc[0] if len(reference_outputs) else "reference"
    kinds = study.config.evaluation.policies
    files = study.check("best_of_n").get("files", [])
    policy_outputs = {f"{k}-RM": study.read("best_of_n", f"{k}_outputs") for k in kinds if f"{k}_outputs.json" in files}
    by = {(r["policy"], r["protocol"]): r for r in saved.get("results", [])}
    evaluations: dict[str, Evaluation] = {}
    for (policy, protocol), items in judgments.groupby(["policy", "protocol"], sort=False) if len(judgments) else []:
        info = by.get((policy, protocol), {})
        r = _result(protocol, items.drop(columns=["policy", "protocol"]).reset_index(drop=True), policy=policy,
                    reference=info.get("reference", reference), judge=info.get("judge", saved.get("judge", "")),
                    ignored=info.get("ignored") or {}, n_boot=n_boot, seed=study.config.seed,
                    verdicts=info.get("verdicts", "hard"), notes=info.get("notes") or ())
        r.dropped = {reasons(k, recorded): v for k, v in r.dropped.items()}
        ev = evaluations.setdefault(policy, Evaluation(policy, r.reference, r.judge, None, {}))
        ev.results[protocol] = r
    alignments = {name: align_outputs(out, reference_outputs, datasets=study.config.best_of_n.datasets, policy=name,
                                      reference=reference) for name, out in policy_outputs.items()}
    not_evaluated = {f"{k}-RM": "notebook 06 saved no outputs for it" for k in kinds if f"{k}-RM" not in policy_outputs}
    return EvaluationRun(study=study, evaluations=evaluations, alignments=alignments, policy_outputs=policy_outputs,
                         reference_outputs=reference_outputs, reference=reference, judge=saved.get("judge", ""),
                         recorded=recorded, not_evaluated=not_evaluated, counts=m.get("counts") or {}, n_boot=n_boot,
                         seed=study.config.seed)
