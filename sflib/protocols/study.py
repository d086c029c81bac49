"""Stage 09 of a study: collect every protocol of ``feedback.protocols`` on 01's responses with the
feedback judge, and compare them (:mod:`sflib.protocols.compare`).

``rating-1-7`` / ``pairwise-3way`` with stage 02/03's templates read those stages' outputs (no call;
the recorded paper judge works). Every other protocol is asked through the study's annotation store
(cached, resumable, never paid twice); a recorded judge has no answers for them, so they are skipped
and said so. ``quick`` limits the asked protocols to the first ``quick_instructions`` instructions.
Outputs: ``<study folder>/09_protocols/`` — ``<protocol>.verdicts.jsonl``, ``<protocol>.pairs.jsonl``,
``agreement.jsonl``, ``protocols.jsonl`` and ``summary.json`` (counts, skipped protocols).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from .. import io as sfio
from . import get_protocol
from .compare import ProtocolRun, findings
from .plan import reuses_stage, study_protocols

FOLDER = "09_protocols"


def folder(study) -> Path:
    return study.folder / FOLDER


def collect(study, *, quick: bool = False, quick_instructions: int = 3, progress: bool = True,
            names: list[str] | None = None) -> tuple[dict, dict]:
    """``({name: ProtocolRun}, {name: why skipped})`` for the study's protocols (``names``: these instead of
    ``feedback.protocols``; stage 05 asks ``reward_models.protocols`` so, and 09 finds them in the store)."""
    from ..study.acquire import is_recorded, judge as get_judge

    cfg = study.config
    responses = study.read("responses")
    judge_name = cfg.feedback.judge
    runs, skipped = {}, {}
    j = None
    for name in (study_protocols(cfg) if names is None else names):
        protocol = get_protocol(name)
        stage = reuses_stage(protocol, cfg)
        if stage is not None:
            try:
                table = study.read(stage)
            except Exception as e:  # a missing / stale stage: say so, go on
                skipped[name] = f"stage {stage} not available ({e})"
                continue
            verdicts = protocol.from_table(table)
        elif is_recorded(judge_name) or judge_name.startswith("human:"):
            skipped[name] = f"judge {judge_name} has no answers for {name} (recorded/human judges answer only " \
                            "the paper's two protocols)"
            continue
        else:
            j = j or get_judge(judge_name)
            asked = responses
            if quick:
                keep = list(dict.fromkeys(responses["instruction_id"]))[:quick_instructions]
                asked = responses[responses["instruction_id"].isin(keep)]
            verdicts = protocol.acquire(asked, j, store=study.store_path, progress=progress)
        runs[name] = ProtocolRun(protocol, verdicts, judge=_price_name(j, judge_name))
    return runs, skipped


def _price_name(j, name: str) -> str:
    """The name the judge is priced under (its client name ``openai:<model>``, else the config's
    ``provider:model``, else the name; see sflib.core.costs)."""
    from ..core import costs
    from ..study.config import _resolve
    from ..study.planner import judge_name

    try:
        configured = judge_name(_resolve("judge", name), name)
    except Exception:  # e.g. a human judge
        configured = name
    for candidate in (getattr(j, "name", None), configured, name):
        if candidate and costs.price(candidate) is not None:
            return candidate
    return getattr(j, "name", None) or configured


def run(study, *, quick: bool = False, progress: bool = True):
    """Collect, compare, save; returns the :class:`~sflib.core.findings.Findings` (with ``.runs``, ``.skipped``)."""
    runs, skipped = collect(study, quick=quick, progress=progress)
    f = findings(runs, judge=study.config.feedback.judge)
    for name, why in skipped.items():
        f.notes.append(f"{name}: not collected — {why}.")
    out = folder(study)
    out.mkdir(parents=True, exist_ok=True)
    for name, r in runs.items():
        v = r.verdicts.copy()
        v["value"] = [json.dumps(x) if isinstance(x, (list, dict)) else x for x in v["value"]]
        if "response_ids" in v:
            v["response_ids"] = [json.dumps(list(x)) for x in v["response_ids"]]
        sfio.write_table(v, out / f"{name}.verdicts.jsonl")
        sfio.write_table(r.pairs, out / f"{name}.pairs.jsonl")
    sfio.write_table(f.tables["agreement"], out / "agreement.jsonl")
    sfio.write_table(f.tables["protocols"], out / "protocols.jsonl")
    summary = {"study": study.name, "judge": study.config.feedback.judge, "quick": bool(quick),
               "inputs": inputs_fingerprint(study),
               "protocols": list(runs), "skipped": skipped, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "matrices": {f"{x} | {y}": m.values.tolist() for (x, y), m in f.matrices.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    f.runs, f.skipped = runs, skipped  # type: ignore[attr-defined]
    f.tables["reward models"] = reward_model_table(runs)
    return f


def inputs_fingerprint(study) -> dict:
    """What 09's outputs depend on: the manifests of stages 01-03 (their hashes) and the study's ``feedback``
    section (judge, templates, protocols)."""
    return {"manifests": {s: study.manifest_hash(s) for s in ("responses", "ratings", "rankings")},
            "feedback": study.hash("feedback")}


def summary_of(study) -> dict | None:
    """What :func:`run` wrote in ``09_protocols/summary.json``, or None before notebook 09 has run."""
    try:
        return json.loads((folder(study) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def state(study, quick: bool | None = None, summary: dict | None = None) -> str:
    """``missing`` (09 has not run), ``stale`` (01-03 or the feedback section changed since, or ``quick``
    differs from the mode it ran in) or ``done``: what ``study status`` shows and ``--skip-done`` reads.
    ``summary``: :func:`summary_of`'s, when the caller has read it already."""
    summary = summary if summary is not None else summary_of(study)
    if summary is None:
        return "missing"
    if summary.get("inputs") != inputs_fingerprint(study):
        return "stale"
    return "stale" if quick is not None and bool(summary.get("quick")) != bool(quick) else "done"


def saved_findings(study):
    """Stage 09's findings read back from ``09_protocols/`` as :func:`run` wrote them (nothing is asked): the
    study report's section 09. Raises :class:`~sflib.study.folder.StageMissing` before notebook 09 has run."""
    from ..study.folder import StageMissing

    out = folder(study)
    summary = summary_of(study)
    if summary is None:
        raise StageMissing(f"study {study.name}: notebook 09 has not run (no {out / 'summary.json'}); run it first "
                           f"(python -m sflib study run {study.spec} --only 09)")
    judge = summary.get("judge") or study.config.feedback.judge
    runs = {}
    for name in summary.get("protocols", []):
        verdicts = pd.read_json(out / f"{name}.verdicts.jsonl", lines=True, dtype=False)
        for col in ("value", "response_ids"):  # run() wrote lists / dicts as JSON text
            if col in verdicts:
                verdicts[col] = [json.loads(x) if isinstance(x, str) and x[:1] in "[{" else x for x in verdicts[col]]
        if "response_ids" in verdicts:
            verdicts["response_ids"] = [tuple(x) if isinstance(x, list) else x for x in verdicts["response_ids"]]
        pairs = pd.read_json(out / f"{name}.pairs.jsonl", lines=True, dtype=False)
        runs[name] = ProtocolRun(get_protocol(name), verdicts, judge=_price_name(None, judge), pairs=pairs)
    f = findings(runs, judge=judge)
    for name, why in (summary.get("skipped") or {}).items():
        f.notes.append(f"{name}: not collected — {why}.")
    if summary.get("quick"):
        f.notes.append("Written in quick mode (protocols that needed new calls asked only a few instructions).")
    f.tables["reward models"] = reward_model_table(runs)
    return f


def reward_model_table(runs: dict) -> pd.DataFrame:
    """Per protocol: what a reward model learns from it (regression on scores, Bradley–Terry on pairs, ...)
    and how many preference pairs it gives (notebook 09's last table)."""
    return pd.DataFrame([{"protocol": n, "unit": r.protocol.unit, "reward model": r.protocol.reward_model,
                          "pairs for it": len(r.pairs)} for n, r in runs.items()],
                        columns=["protocol", "unit", "reward model", "pairs for it"])


def preference_pairs(run: ProtocolRun, responses: pd.DataFrame) -> pd.DataFrame:
    """A protocol's implied pairs as a rankings table (the columns 05's Bradley–Terry reward model reads:
    instruction, input, response1, response2, decision), ties kept as ``equal`` (05 excludes them)."""
    resp = responses.drop_duplicates("response_id").set_index("response_id")
    p = run.pairs
    out = pd.DataFrame({"instruction_id": p["instruction_id"].values,
                        "response_id_1": p["response_id_1"].values, "response_id_2": p["response_id_2"].values})
    out["instruction"] = resp.loc[p["response_id_1"], "instruction"].values
    out["input"] = resp.loc[p["response_id_1"], "input"].values
    out["response1"] = resp.loc[p["response_id_1"], "response"].values
    out["response2"] = resp.loc[p["response_id_2"], "response"].values
    out["decision"] = p["decision"].values
    out["valid"] = True
    return out
