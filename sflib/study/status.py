"""Where a study stands (:func:`status`) and what it has spent (:func:`spent`); what it will cost is
:mod:`sflib.study.planner`."""
from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd

from .config import STAGES, _resolve
from .folder import STAGE_INFO

FREE = {"local": "local model: nothing to pay", "recorded": "recorded answers: nothing to pay",
        "human": "human annotators: no API cost"}


def judge_name(settings: dict, name: str) -> str:
    """The name a judge is stored under in the annotation store (``provider:model``)."""
    if settings.get("provider") and settings.get("model") and settings["provider"] != "recorded":
        return f"{settings['provider']}:{settings['model']}"
    return name


# ----------------------------------------------------------------------------- status

def spent(study) -> float:
    """Dollars the annotation store records for the study's judges (tokens x price; unknown prices count 0)."""
    path = study.store_path
    if not path.exists():
        return 0.0
    cfg = study.config
    names = {cfg.feedback.judge, cfg.evaluation.judge, *cfg.feedback.extra_judges}
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:  # answers that came through a Batch API job are priced at the batch prices
        # (marked on the answer; a store written before that keeps its collected lines in batch_requests)
        has_batches = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'batch_requests'").fetchone()
        marked = any(r[1] == "batch" for r in con.execute("PRAGMA table_info(annotations)"))
        batched = " OR ".join([*(["COALESCE(a.batch, 0) = 1"] if marked else []),
                               *(["a.key IN (SELECT key FROM batch_requests WHERE state = 'done')"]
                                 if has_batches else [])]) or "0"
        rows = {(j, bool(b)): (p, c) for j, b, p, c in con.execute(
            f"SELECT a.judge, ({batched}) AS batched, SUM(a.prompt_tokens), SUM(a.completion_tokens) "
            "FROM annotations a GROUP BY a.judge, batched")}
    except sqlite3.Error:
        rows = {}
    finally:
        con.close()
    stored_as = {}  # two names of one model (a judge file and openai:<model>) share its rows: count them once
    for name in sorted(names):
        s = _resolve("judge", name)
        stored_as.setdefault(judge_name(s, name), s)
    total = 0.0
    for stored_name, s in stored_as.items():
        for batched, prefix in ((False, "price_"), (True, "price_batch_")):
            tokens = rows.get((stored_name, batched))
            pin, pout = s.get(f"{prefix}input_per_mtok"), s.get(f"{prefix}output_per_mtok")
            if tokens and pin is not None and pout is not None:
                total += ((tokens[0] or 0) * pin + (tokens[1] or 0) * pout) / 1e6
    return total


def _recorded_cost(study, stage: str, state: str, manifest: dict) -> float:
    """The stage's ``cost_usd`` from its manifest; a judge with no price that costs nothing (a human,
    recorded answers, a local model) records none: $0.00, not unknown."""
    cost = (manifest.get("counts") or {}).get("cost_usd", "absent")
    if cost == "absent":
        return _unrecorded_cost(study, stage, state)
    if cost is None and str(manifest.get("judge") or "").partition(":")[0] in FREE:
        return 0.0
    return np.nan if cost is None else cost


def _unrecorded_cost(study, stage: str, state: str) -> float:
    """Dollars of a stage whose manifest records none: 0 for local computations, for a stage not
    written, and for a policy that costs nothing (local, or priced 0); else unknown (NaN)."""
    if state not in ("done", "stale") or stage in ("consistency", "reward_models"):
        return 0.0
    if stage in ("responses", "best_of_n"):
        name = (study.config.best_of_n.policy if stage == "best_of_n" else None) or study.config.policy.name
        try:
            s = _resolve("policy", name)
        except Exception:  # noqa: BLE001 - a policy file gone since: the cost is simply unknown
            return np.nan
        if s.get("provider") in FREE or (s.get("price_input_per_mtok") == 0 and s.get("price_output_per_mtok") == 0):
            return 0.0
    return np.nan


STATUS_COLUMNS = ["stage", "notebook", "state", "n", "valid", "invalid", "failed", "spent_usd", "written", "folder",
                  "detail"]


def status(study) -> pd.DataFrame:
    """Per stage: state (done / seeded / missing / stale), counts from the manifest, dollars, the folder."""
    rows = []
    for stage in STAGES:
        m = study.manifest(stage) or {}
        counts = m.get("counts") or {}
        state = study.state(stage)
        detail = "; ".join(study.stale_reasons(stage)) if state == "stale" else (m.get("notes") or "")
        if state == "missing" and stage in study.config.seeded_from_data:
            hub = study.config.seeded_from_hub
            detail = (f"read from the Hub dataset {hub.repo}@{hub.revision} on the first read or run"
                      if hub is not None and stage in hub.stages else "seeded from data/canonical on the first read or run")
        if counts.get("reasons"):
            detail = (detail + "; " if detail else "") + f"reasons: {counts['reasons']}"
        rows.append(dict(stage=stage, notebook=STAGE_INFO[stage][0], state=state,
                         n=counts.get("n", np.nan), valid=counts.get("valid", np.nan),
                         invalid=counts.get("invalid", np.nan), failed=counts.get("failed", np.nan),
                         spent_usd=_recorded_cost(study, stage, state, m), written=m.get("time", ""),
                         folder=str(study.stage_dir(stage)), detail=detail))
    rows.append(_protocols_row(study))
    rows.append(dict(stage="total", notebook="", state="", n=np.nan, valid=np.nan, invalid=np.nan, failed=np.nan,
                     spent_usd=spent(study), written="", folder=str(study.folder),
                     detail=f"spent: the annotation store {study.store_path} for this study's judges"))
    return pd.DataFrame(rows, columns=STATUS_COLUMNS)


def _protocols_row(study) -> dict:
    """Notebook 09's row, from what it wrote (``09_protocols/summary.json`` and ``protocols.jsonl``): n = the
    judge calls of its protocols, valid / invalid = their readable / unreadable answers, the dollars of the
    calls it made itself (a protocol that reuses 02/03's answers is counted there)."""
    from ..protocols.plan import study_protocols
    from ..protocols.study import folder, state, summary_of

    out = folder(study)
    row = dict(stage="protocols", notebook="09_protocols", state="missing", n=np.nan, valid=np.nan,
               invalid=np.nan, failed=np.nan, spent_usd=0.0, written="", folder=str(out),
               detail="protocols: " + ", ".join(study_protocols(study.config)))
    summary = summary_of(study)
    try:
        per = pd.read_json(out / "protocols.jsonl", lines=True) if (out / "protocols.jsonl").stat().st_size else None
    except (OSError, ValueError):
        per = None
    if summary is None:
        return row
    row.update(state=state(study, summary=summary), written=str(summary.get("time", "")))
    if per is not None and len(per):
        calls = per["calls"].fillna(0).astype(int)
        valid = (calls * (1 - per["invalid_rate"].fillna(0))).round().astype(int)
        cost = pd.to_numeric(per["cost_usd"], errors="coerce")
        row.update(n=int(calls.sum()), valid=int(valid.sum()), invalid=int((calls - valid).sum()), failed=0,
                   spent_usd=float(cost.fillna(0).sum()))
        row["detail"] = "protocols: " + ", ".join(f"{p} ({_reused(study, p) or 'asked'}: {c:,} calls)"
                                                  for p, c in zip(per["protocol"], calls))
    if summary.get("skipped"):
        row["detail"] += "; skipped: " + "; ".join(f"{k}: {v}" for k, v in summary["skipped"].items())
    if summary.get("quick"):
        row["detail"] += " (quick mode)"
    return row


def _reused(study, name: str) -> str | None:
    """``"02's answers"`` / ``"03's answers"`` when the protocol is stage 02/03's very requests."""
    from ..protocols import get_protocol
    from ..protocols.plan import reuses_stage

    try:
        stage = reuses_stage(get_protocol(name), study.config)
    except Exception:  # noqa: BLE001 - a protocol file gone since: say nothing about it
        return None
    return {"ratings": "02's answers", "rankings": "03's answers"}.get(stage or "")
