"""Stage 05 of a study: train a ratings RM and a rankings RM on notebooks 02/03's feedback, evaluate them
on held-out instructions and save the stage's output (``05_reward_models/``).

:func:`run` does what notebook 05 did in its cells. The ratings are **cleaned by the rule of notebooks
02 and 04** (:func:`sflib.feedback.ratings.valid_ratings`: rows without a valid score set aside, a
response rated twice keeps its first rating) before the split, so the RM trains on the same ratings the
other stages count; ranked pairs without a decision or tied are left out by the Bradley–Terry objective.
One split by instruction serves both tables (no instruction on both sides): a seeded draw of
``reward_models.val_fraction`` of the instructions, or, when the rankings stage carries the paper's
released reward-model split (table ``rm_split``, ``studies/paper_full.yaml``), that split: the rankings RM
trains on its train pairs and is validated on its val pairs, and the ratings RM holds out the instructions
of the val pairs (the ratings of every other instruction, in the train file or in neither, train it).
The two RM folders, the held-out table and ``metrics.json`` go to the study folder;
:mod:`sflib.rm.findings` turns the result into the stage's findings.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import protocols as protocol_rms
from .metrics import evaluate, held_out_ratings
from .objectives import instruction_ids, released_split, split_by_instruction, validation_instructions
from .scoring import score_frame
from .training import train_reward_model


def is_demo(backbone: str, quick: bool = False) -> bool:
    """A CPU demonstration: a bundled tiny backbone (MiniLM, SmolLM2) or quick mode. Its figures say so."""
    from ..generation.models import ALIASES

    return quick or str(backbone).lower() in ALIASES


@dataclass
class RewardModelsRun:
    """What :func:`run` computed (the RMs themselves are in ``runs[kind].rm``)."""

    backbone: str
    demo: bool
    judge: str
    ratings: pd.DataFrame            # as read
    ratings_kept: pd.DataFrame       # cleaned: one valid rating per response
    rating_counts: dict              # rows, without_score, duplicates, conflicting, used
    rankings: pd.DataFrame
    val_ids: set
    splits: dict                     # kind -> (train, held-out)
    runs: dict                       # kind -> {counts, steps, seconds, log_history} of its training, or None
    rms: dict                        # kind -> the trained RewardModel
    notes: dict                      # kind -> why not trained / warnings
    settings: dict
    held_out: pd.DataFrame           # one row per RM: pairwise accuracy, MSE, Spearman
    held_ratings: dict = field(default_factory=dict)   # "<kind> RM" -> per-row held-out predictions
    scored: pd.DataFrame = field(default_factory=pd.DataFrame)  # every kept rating scored by both RMs
    counts: dict = field(default_factory=dict)                    # the manifest counts
    ranking_exclusions: dict = field(default_factory=dict)        # sflib.feedback.clean's reasons for rankings
    split: dict = field(default_factory=dict)     # which split: kind "released" / "seeded", description, sizes
    torch_threads: int | None = None              # the CPU threads torch trained with (None: not recorded)
    protocol_held_out: pd.DataFrame = field(default_factory=pd.DataFrame)  # reward_models.protocols' RMs (sflib.rm.protocols)

    @property
    def trained(self) -> dict:
        return {k: r for k, r in self.runs.items() if r is not None}


def settings_for(cfg, seed: int, quick: bool) -> dict:
    """The training settings of the study's ``reward_models`` section (quick: a few steps, short sequences)."""
    return dict(backbone=cfg.backbone, lora=cfg.lora, max_length=min(128, cfg.max_length) if quick else cfg.max_length,
                epochs=1 if quick else cfg.epochs, max_steps=3 if quick else -1, batch_size=cfg.batch_size,
                learning_rate=cfg.learning_rate, seed=seed, logging_steps=1 if quick else 2,
                save_checkpoints=False, progress=False)


def record(ratings, rankings, rating_counts, runs, notes, settings, n_val, held_out,
           ranking_exclusions: dict | None = None, split: dict | None = None,
           torch_threads: int | None = None) -> tuple[dict, dict]:
    """The manifest counts and ``metrics.json``: rows read / used, every exclusion by reason, which RMs
    were trained and why the others were not, which split (``split``: :func:`_split`'s description) and
    how many torch threads trained."""
    runs = {k: (_info(r) if r is not None and not isinstance(r, dict) else r) for k, r in runs.items()}
    no_decision = int(rankings["decision"].isna().sum()) if "decision" in rankings else len(rankings)
    ties = int((rankings["decision"] == "equal").sum()) if "decision" in rankings else 0
    trained = sorted(k for k, r in runs.items() if r is not None)
    reasons = {"ratings: no valid score": rating_counts["without_score"],
               "ratings: duplicate rating of a response (first kept)": rating_counts["duplicates"],
               "rankings: no decision": no_decision, "rankings: tie, left out": ties}
    reasons.update({f"rankings: {k}": v for k, v in (ranking_exclusions or {}).items() if k.startswith("duplicate")})
    not_in_split = int((split or {}).get("not_in_split") or 0)
    reasons[NOT_IN_SPLIT] = not_in_split
    reasons = {k: v for k, v in reasons.items() if v}
    reasons.update({f"{kind} RM not trained: {why}": 1 for kind, why in notes.items() if runs[kind] is None})
    dup_pairs = sum(v for k, v in (ranking_exclusions or {}).items() if k.startswith("duplicate"))
    counts = {"n": len(ratings) + len(rankings),
              "valid": rating_counts["used"] + len(rankings) - no_decision - ties - dup_pairs - not_in_split,
              "invalid": rating_counts["without_score"] + no_decision, "failed": len(runs) - len(trained),
              "reasons": reasons, "trained": trained}
    if split:
        counts["split"] = split["description"]
    if not trained:
        counts["reason"] = "no reward model could be trained: " + "; ".join(notes.values())
    metrics = {"settings": {k: v for k, v in settings.items() if k != "progress"}, "held_out_instructions": n_val,
               "split": split or {}, "torch_threads": torch_threads,
               "ratings_cleaning": rating_counts,
               "trained": {k: runs[k] for k in trained},
               "not_trained": {k: notes[k] for k in runs if runs[k] is None},
               "held_out": held_out.reset_index().to_dict("records") if len(held_out) else []}
    return counts, metrics


def _info(result) -> dict:
    """What notebook 05 shows of one training run (saved in ``metrics.json``, so it can be read back)."""
    return {"counts": result.counts, "steps": result.trainer.state.global_step,
            "seconds": result.rm.meta.get("train_seconds"), "log_history": list(result.log_history),
            "torch_threads": result.rm.meta.get("torch_threads_per_process")}


NOT_IN_SPLIT = "rankings: not in the released train/val split, left out"


def _released(study):
    """The rankings stage's released reward-model split (table ``rm_split``) and its file, or None."""
    tables = (study.manifest("rankings") or {}).get("tables") or {}
    if "rm_split" not in tables:
        return None
    folder = study.stage_dir("rankings")
    path = next(iter(sorted(folder.glob("rm_split.*"))), folder / "rm_split.jsonl")
    return study.read("rankings", "rm_split"), path


def _split(study, kept, rankings):
    """(held-out instruction ids, {kind: (train, held-out)}, what split it is): the released split of the
    rankings stage when it has one (checked: :func:`sflib.rm.objectives.released_split`), else a seeded
    draw of ``val_fraction`` of the instructions. Deterministic: :func:`load` rebuilds the split of :func:`run`."""
    cfg, seed = study.config.reward_models, study.config.seed
    released = _released(study)
    if released is None:
        ids = pd.concat([instruction_ids(df) for df in (kept, rankings) if len(df)] or [pd.Series(dtype=str)])
        val_ids = validation_instructions(ids, cfg.val_fraction, seed)
        splits = {kind: (split_by_instruction(df, val_ids=val_ids) if len(df) else (df, df))
                  for kind, df in (("ratings", kept), ("rankings", rankings))}
        info = {"kind": "seeded", "val_fraction": cfg.val_fraction, "seed": seed,
                "description": f"a seeded split by instruction, val_fraction {cfg.val_fraction:g} (seed {seed})"}
    else:
        table, path = released
        train, val, info = released_split(table, rankings, path)
        val_ids = set(instruction_ids(val))
        splits = {"ratings": split_by_instruction(kept, val_ids=val_ids) if len(kept) else (kept, kept),
                  "rankings": (train, val)}
        info = {"kind": "released", **info, "table": "rankings/rm_split",
                "description": f"the released train/val split: {info['train_pairs']:,} / {info['val_pairs']:,} pairs"}
    info["held_out_instructions"] = len(val_ids)
    return val_ids, splits, info


def _clean(ratings):
    """Ratings by the one counting rule of :mod:`sflib.feedback.clean` (as 02 and 04 count them)."""
    from ..feedback import clean

    kept, why = clean.clean_ratings(ratings)
    return kept, {"rows": len(ratings), "without_score": why[clean.INVALID] + why[clean.FAILED],
                  "duplicates": why[clean.DUP_SAME_SCORE] + why[clean.DUP_OTHER_SCORE],
                  "conflicting": why[clean.DUP_OTHER_SCORE], "used": len(kept), "exclusions": why}


def _clean_rankings(rankings):
    """Ranked pairs by the same rule (a pair ranked twice keeps its first decision), as 03 and 04 count them."""
    from ..feedback import clean

    kept, why = clean.clean_rankings(rankings)
    return kept, why


def _evaluate(rms: dict, splits: dict, kept: pd.DataFrame, val_ids: set):
    named = {f"{kind} RM": rm for kind, rm in rms.items()}
    held_out = evaluate(named, ratings=splits["ratings"][1], rankings=splits["rankings"][1]) if named else pd.DataFrame()
    held_ratings = {name: held_out_ratings(rm, splits["ratings"][1]) for name, rm in named.items()}
    scored = kept.copy()
    if len(scored) and rms:
        scored["split"] = ["held-out" if i in val_ids else "train" for i in instruction_ids(scored)]
        for kind, rm in rms.items():
            scored[f"{kind}_reward"] = score_frame(rm, scored)
    return held_out, held_ratings, scored


def load(study) -> RewardModelsRun:
    """The stage as :func:`run` left it, read back from ``05_reward_models/`` (nothing is trained): the saved
    RM folders score the same cleaned ratings and the same held-out split (seeded, or the released one), the
    training runs and the torch threads come from ``metrics.json``."""
    import json

    from .folder import RewardModel

    m = study.check("reward_models")
    metrics = json.loads(study.path_of("reward_models", "metrics.json").read_text(encoding="utf-8"))
    ratings, raw_rankings = study.read("ratings"), study.read("rankings")
    kept, rating_counts = _clean(ratings)
    rankings, ranking_exclusions = _clean_rankings(raw_rankings)
    val_ids, splits, split = _split(study, kept, rankings)
    files = m.get("files", [])
    rms = {k: RewardModel.load(study.path_of("reward_models", k)) for k in ("ratings", "rankings") if k in files}
    runs = {k: metrics.get("trained", {}).get(k) for k in ("ratings", "rankings")}
    notes = {k: metrics.get("not_trained", {}).get(k, "") for k in ("ratings", "rankings")}
    proto = protocol_rms.from_saved(study, files)  # reward_models.protocols: the tables 05 saved, nothing asked
    psplits = protocol_rms.split(proto, val_ids)
    rms.update({k: RewardModel.load(study.path_of("reward_models", k)) for k in proto if k in files})
    runs.update({k: metrics.get("trained", {}).get(k) for k in proto})
    notes.update({k: metrics.get("not_trained", {}).get(k, "") for k in proto})
    held_out, held_ratings, scored = _evaluate(rms, splits, kept, val_ids)
    protocol_held_out = protocol_rms.own_held_out({k: rms[k] for k in proto if k in rms}, proto, psplits)
    splits.update(psplits)
    settings = metrics.get("settings", {})
    backbone = settings.get("backbone", study.config.reward_models.backbone)
    return RewardModelsRun(backbone=backbone, demo=is_demo(backbone, settings.get("max_steps", -1) > 0),
                           judge=m.get("judge") or study.config.feedback.judge, ratings=ratings, ratings_kept=kept,
                           rating_counts=rating_counts, rankings=rankings, val_ids=val_ids, splits=splits, runs=runs,
                           rms=rms, notes=notes, settings=settings, held_out=held_out, held_ratings=held_ratings,
                           scored=scored, counts=m.get("counts") or {}, ranking_exclusions=ranking_exclusions,
                           split=split, torch_threads=metrics.get("torch_threads"), protocol_held_out=protocol_held_out)


def run(study, *, quick: bool = False, save: bool = True) -> RewardModelsRun:
    """Train, evaluate and (``save``) write stage 05 for ``study``."""
    import torch

    from ..core.threads import set_torch_threads
    from ..study.findings import attempt_quietly, save_stage

    cfg, seed = study.config.reward_models, study.config.seed
    torch.manual_seed(seed)
    threads = set_torch_threads()  # the cores this process really has (affinity, cgroup quota, OMP_NUM_THREADS)
    ratings, raw_rankings = study.read("ratings"), study.read("rankings")
    judge = (study.manifest("ratings") or {}).get("judge") or study.config.feedback.judge
    kept, rating_counts = _clean(ratings)
    rankings, ranking_exclusions = _clean_rankings(raw_rankings)
    val_ids, splits, split = _split(study, kept, rankings)
    proto = protocol_rms.collect(study)  # reward_models.protocols: their answers, through the store
    psplits = protocol_rms.split(proto, val_ids)
    settings = settings_for(cfg, seed, quick)
    study.folder.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".05-train-", dir=study.folder))
    try:
        results, notes = {}, {}
        for kind, (train, held) in splits.items():
            got = attempt_quietly(train_reward_model, kind, train, work / kind, eval=held, **settings)
            results[kind], notes[kind] = got.value, (got.reason or "; ".join(got.notes) or "")
        got_p = protocol_rms.train(proto, psplits, work, settings)
        results.update(got_p[0])
        notes.update(got_p[1])
        rms = {kind: r.rm for kind, r in results.items() if r is not None}
        runs = {kind: (_info(r) if r is not None else None) for kind, r in results.items()}
        held_out, held_ratings, scored = _evaluate(rms, splits, kept, val_ids)
        threads = next((r["torch_threads"] for r in runs.values() if r and r.get("torch_threads")), threads)
        counts, metrics = record(ratings, raw_rankings, rating_counts, runs, notes, settings, len(val_ids), held_out,
                                 ranking_exclusions, split, threads)
        protocol_held_out = protocol_rms.own_held_out({k: rms[k] for k in proto if k in rms}, proto, psplits)
        metrics["protocols"] = protocol_rms.metrics_info(proto, protocol_held_out)
        failed = sum(d.failed for d in proto.values())
        if failed:  # judge calls of reward_models.protocols that got no answer: 05 is incomplete until re-run
            counts["protocol_calls_failed"] = failed
            counts.setdefault("reasons", {})["protocol judge call failed (asked again when 05 runs again)"] = failed
        splits.update(psplits)
        if save:
            save_stage(study, "reward_models", files=[work / kind for kind in counts["trained"]],
                       json_files={"metrics.json": metrics},
                       tables={**({"held_out": held_out.reset_index()} if len(held_out) else {}),
                               **{f"protocol_{k}": d.table for k, d in proto.items() if len(d.table)}}, counts=counts,
                       inputs=["ratings", "rankings"], judge=judge, notes=counts.get("reason"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return RewardModelsRun(backbone=cfg.backbone, demo=is_demo(cfg.backbone, quick), judge=judge, ratings=ratings,
                           ratings_kept=kept, rating_counts=rating_counts, rankings=rankings, val_ids=val_ids,
                           splits=splits, runs=runs, rms=rms, notes=notes, settings=settings, held_out=held_out,
                           held_ratings=held_ratings, scored=scored, counts=counts,
                           ranking_exclusions=ranking_exclusions, split=split, torch_threads=threads,
                           protocol_held_out=protocol_held_out)


__all__ = ["RewardModelsRun", "is_demo", "load", "record", "run", "settings_for"]
