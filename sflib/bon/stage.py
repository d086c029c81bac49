"""Stage 06 of a study: sample n responses per evaluation instruction, score them with notebook 05's reward
models, keep each RM's best, and (when the study computes this stage) save the selections for notebook 07.

:func:`run` does what notebook 06 did in its cells. When the study seeds ``best_of_n`` from the paper's
released best-of-64 outputs, those are what notebook 07 evaluates, and the same machinery runs as a small
**demonstration** (a random sample of the evaluation set, the ``demo_*`` settings) that feeds nothing
downstream. Otherwise the selections, all samples with both rewards and the reference outputs of the same
instructions go to ``06_best_of_n/``. :mod:`sflib.bon.findings` turns the result into the stage's findings.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..core import data as sfdata
from . import load_reward_model, score_samples, to_model_outputs
from .select import select_best


@dataclass
class BestOfNRun:
    """What :func:`run` computed."""

    seeded: bool                     # the study's outputs are the paper's; this run is a demonstration
    released: dict                   # seeded: name -> the released model_outputs frame
    asked: pd.DataFrame              # the instructions sampled for
    policy: str
    generator: str
    n: int
    max_new_tokens: int
    samples: pd.DataFrame
    rm_rows: list                    # one row per reward model: backbone, kind, used, note
    rm_meta: dict                    # kind -> reward_model.json of the RMs used
    scored: dict                     # kind -> samples with a reward column
    best: dict                       # kind -> best-of-n selection
    counts: dict = field(default_factory=dict)
    evaluation_instructions: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def empty(self) -> int:
        return int((self.samples["response"].fillna("").str.strip() == "").sum()) if len(self.samples) else 0

    @property
    def cut(self) -> int:
        return int((self.samples.get("finish_reason", pd.Series(dtype=str)) == "length").sum())

    @property
    def truncated_share(self) -> float:
        return self.cut / max(len(self.samples), 1)


def _reward_models(study, kinds) -> tuple[dict, list, dict]:
    from ..rm.protocols import trained_kind
    from ..study.findings import Attempt, attempt

    m05 = study.check("reward_models")
    rms, rows, meta = {}, [], {}
    for kind in kinds:  # ratings, rankings, or a protocol of reward_models.protocols (trained as one of the two)
        if kind in m05.get("files", []):
            got = attempt(load_reward_model, study.path_of("reward_models", kind), kind=trained_kind(kind))
        else:
            got = Attempt(reason=(m05.get("counts") or {}).get("reason") or f"notebook 05 saved no {kind} reward model")
        if got.ok:
            rms[kind], meta[kind] = got.value, dict(got.value.meta)
        rows.append(_rm_row(kind, got.value.meta if got.ok else {}, got.ok, got.reason or ""))
    return rms, rows, meta


def _rm_row(kind: str, meta: dict, used: bool, note: str) -> dict:
    """One row of 06's reward-model table: its backbone, the objective it was trained on, whether it was used."""
    trained = meta.get("kind") if not meta or kind == meta.get("kind") else f"{kind} as {meta.get('kind')}"
    return {"reward model": f"{kind} RM", "backbone": meta.get("backbone"), "trained on": trained, "used": used,
            "note": note}


def _saved_meta(study, kind: str) -> dict:
    """``reward_model.json`` of 05's ``kind`` RM, read without loading its weights ({} when there is none)."""
    import json

    from ..rm import META_NAME
    from ..study.folder import StudyError

    try:
        return json.loads((Path(study.path_of("reward_models", kind)) / META_NAME).read_text())
    except (OSError, ValueError, StudyError):
        return {}


def run(study, *, quick: bool = False, demo_policy: str = "local:smollm2", demo_instructions: int = 12,
        demo_n: int = 8, demo_max_new_tokens: int = 64, rm_batch_size: int = 32, save: bool = True) -> BestOfNRun:
    """Sample, score, select and (``save``, when the stage is not seeded) write stage 06 for ``study``."""
    from ..study.acquire import quiet_transformers
    from ..study.findings import attempt, best_of_n_policy, best_of_n_samples
    from ..study.inputs import evaluation_instructions, reference_outputs

    quiet_transformers()
    cfg, seed = study.config.best_of_n, study.config.seed
    seeded = "best_of_n" in study.config.seeded_from_data
    evaluation = evaluation_instructions(study)
    released = {}
    if seeded:
        released = {kind: study.read("best_of_n", f"{kind}_outputs") for kind in cfg.reward_models}
        released["reference"] = study.read("best_of_n", "reference_outputs")
        if quick:
            demo_instructions, demo_n, demo_max_new_tokens = 3, 4, 24
        asked = evaluation.sample(n=min(demo_instructions, len(evaluation)), random_state=seed).reset_index(drop=True)
        policy, n, max_new_tokens = demo_policy, demo_n, demo_max_new_tokens
    else:
        asked = evaluation.head(3) if quick else evaluation
        policy, n = best_of_n_policy(study), (min(4, cfg.n) if quick else cfg.n)
        max_new_tokens = min(24, cfg.max_new_tokens) if quick else cfg.max_new_tokens
    samples = best_of_n_samples(study, asked, policy=policy, n=n, max_new_tokens=max_new_tokens)
    generator = samples["generator"].iloc[0] if len(samples) else policy
    rms, rm_rows, rm_meta = _reward_models(study, cfg.reward_models)
    scored = {kind: score_samples(samples, rm, batch_size=rm_batch_size) for kind, rm in rms.items()} if len(samples) else {}
    best = {kind: attempt(select_best, sc, n).value for kind, sc in scored.items()}
    best = {kind: b for kind, b in best.items() if b is not None}
    result = BestOfNRun(seeded=seeded, released=released, asked=asked, policy=policy, generator=generator, n=n,
                        max_new_tokens=max_new_tokens, samples=samples, rm_rows=rm_rows, rm_meta=rm_meta,
                        scored=scored, best=best, evaluation_instructions=evaluation)
    if not seeded and save:
        result.counts = _save(study, result, reference_outputs(study))
    return result


def _save(study, r: BestOfNRun, reference: pd.DataFrame) -> dict:
    from ..study.findings import save_stage

    reason = None if r.best else ("no reward model from notebook 05" if not r.scored and len(r.samples)
                                  else "no samples to select from" if not len(r.samples) else "no selection")
    table = r.samples.copy()
    for kind, sc in r.scored.items():
        table[f"{kind}_reward"] = sc["reward"].to_numpy()
    study.folder.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".06-", dir=study.folder))
    try:
        files = [sfdata.write_model_outputs(to_model_outputs(b, f"{r.generator}_best_of_{r.n}_{kind}_rm"),
                                           work / f"{kind}_outputs.json") for kind, b in r.best.items()]
        files.append(sfdata.write_model_outputs(reference[reference["instruction"].isin(set(r.asked["instruction"]))],
                                                work / "reference_outputs.json"))
        counts = {"n": len(r.samples), "valid": len(r.samples) - r.empty, "invalid": r.empty, "failed": 0,
                  "reasons": {"empty response": r.empty} if r.empty else {}, "instructions": len(r.asked),
                  "samples_per_instruction": r.n, "cut_at_max_new_tokens": r.cut, "reward_models": sorted(r.best)}
        if reason:
            counts["reason"] = reason
        save_stage(study, "best_of_n", tables={"samples": table}, files=files, counts=counts, inputs=["reward_models"],
                   policy=r.policy, notes=reason)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return counts


def load(study) -> BestOfNRun:
    """The stage read back from ``06_best_of_n/`` (nothing is sampled or scored): a computed stage's saved
    samples with both rewards give the same selections; a seeded stage gives the released outputs only (its
    CPU demonstration is not saved: it feeds nothing downstream)."""
    from ..study.inputs import evaluation_instructions

    cfg = study.config.best_of_n
    m = study.check("best_of_n")
    seeded = "best_of_n" in study.config.seeded_from_data
    evaluation = evaluation_instructions(study)
    released, scored, best = {}, {}, {}
    samples = pd.DataFrame(columns=["instruction_id", "instruction", "sample", "response"])
    if seeded:
        released = {kind: study.read("best_of_n", f"{kind}_outputs") for kind in cfg.reward_models}
        released["reference"] = study.read("best_of_n", "reference_outputs")
    else:
        samples = study.read("best_of_n")
        for kind in cfg.reward_models:
            if f"{kind}_reward" in samples:
                scored[kind] = samples.assign(reward=samples[f"{kind}_reward"])
    counts = m.get("counts") or {}
    n = int(counts.get("samples_per_instruction") or (samples.groupby("instruction_id").size().max() if len(samples) else 0))
    best = {kind: select_best(sc, n) for kind, sc in scored.items()}
    asked = samples.drop_duplicates("instruction_id")[["instruction"]] if len(samples) else pd.DataFrame(columns=["instruction"])
    rows = [_rm_row(k, _saved_meta(study, k), k in scored, "" if k in scored else "no rewards saved")
            for k in cfg.reward_models] if not seeded else []
    return BestOfNRun(seeded=seeded, released=released, asked=asked, policy=m.get("policy") or "",
                      generator=samples["generator"].iloc[0] if len(samples) and "generator" in samples else "",
                      n=n, max_new_tokens=cfg.max_new_tokens, samples=samples, rm_rows=rows, rm_meta={},
                      scored=scored, best=best, counts=counts, evaluation_instructions=evaluation)
