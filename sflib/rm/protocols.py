"""Stage 05's reward models from other feedback protocols (``reward_models.protocols`` in the study file).

For each protocol named there, stage 05 gets that protocol's answers on 01's responses from the feedback
judge through the annotation store (:func:`sflib.protocols.study.collect`: cached, so notebook 09 later finds
them there and pays nothing; a recorded or human judge has none, so that RM is "not trained", with the
reason), converts them into the table one of 05's two objectives trains on (:func:`convert`), and trains it
with the ratings and rankings RMs' trainer, settings and split by instruction. Each is saved as its own RM
folder, ``05_reward_models/<protocol>/``, with its training table ``protocol_<protocol>.jsonl``; its name is
then one ``best_of_n.reward_models`` (06) and ``evaluation.policies`` (07, as ``<protocol>-RM``) may use.

Conversions:

- **scores → regression** (a pointwise protocol, ``unit: response``): ``rating-1-7``'s score as it is;
  ``rubric``'s aggregate (the mean of its aspects on its ``scale``, 1–5) mapped linearly onto 1–7 and rounded
  to the nearest integer (the ratings RM's scale; its target is (score − 1) / 6). The unrounded aggregate is
  kept (``protocol_score``) for the pairs it implies.
- **preferences → Bradley–Terry** (``pairwise-3way``, ``pairwise-5way``): the protocol's implied pairs. For
  ``pairwise-5way`` the two orders' strengths (−2..2, turned to response 1's side) are averaged; the **sign** of
  the mean is the decision and a mean of 0 is a tie, left out by the Bradley–Terry loss like 03's ties. The
  magnitude is not used by the loss (it has no per-pair weight): it is counted in the findings (``strong``:
  |mean| ≥ 1, "better" or "much better" on average).
- **listwise → its implied pairs → Bradley–Terry** (not Plackett–Luce): a valid ranking of k responses gives
  all k(k−1)/2 of its pairs, the higher-ranked response preferred, no ties. Bradley–Terry on these pairs fits
  Plackett–Luce's pairwise marginals, not its full likelihood over the ranking.

Held out: every protocol RM is scored on the same held-out 02/03 feedback as the ratings and rankings RMs
(05's held-out table), and on its **own** protocol's implied pairs on the held-out instructions (pairwise
accuracy, Wilson 95%; :func:`own_held_out`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

KINDS = ("ratings", "rankings")
RATINGS_COLUMNS = ["instruction_id", "response_id", "instruction", "input", "response", "score", "protocol_score"]
PAIRS_COLUMNS = ["instruction_id", "response_id_1", "response_id_2", "instruction", "input", "response1",
                 "response2", "decision", "valid", "strength"]


def names(cfg) -> list[str]:
    """The protocols a study trains reward models from (``reward_models.protocols``; the study config or its
    ``reward_models`` section)."""
    section = getattr(cfg, "reward_models", cfg)
    return list(getattr(section, "protocols", None) or [])


def kind_of(protocol) -> str:
    """The objective a protocol's answers train: ``ratings`` (regression) for a pointwise protocol,
    ``rankings`` (Bradley–Terry) for pairwise and listwise ones."""
    return "ratings" if protocol.unit == "response" else "rankings"


def trained_kind(name: str) -> str:
    """The objective (and ``reward_model.json`` kind) of a reward model by its study name."""
    if name in KINDS:
        return name
    from ..protocols import get_protocol

    return kind_of(get_protocol(name))


def conversion(protocol) -> str:
    """How a protocol's answers become training examples (one line, for the findings)."""
    from ..protocols.listwise import Listwise
    from ..protocols.pairwise import Pairwise5Way

    if kind_of(protocol) == "ratings":
        low, high = _scale(protocol)
        how = "as it is" if (low, high) == (1, 7) else f"its {low}-{high} aggregate mapped onto 1-7, rounded"
        return f"scores -> regression ({how})"
    if isinstance(protocol, Listwise):
        return "listwise ranking -> its k(k-1)/2 implied pairs -> Bradley-Terry (not Plackett-Luce)"
    if isinstance(protocol, Pairwise5Way):
        return "5-way preference -> sign of the two orders' mean strength -> Bradley-Terry (0: tie, left out)"
    return "preferences -> Bradley-Terry (ties left out)"


def _scale(protocol) -> tuple[int, int]:
    return int(getattr(protocol, "low", 1)), int(getattr(protocol, "high", 7))


def _responses(responses: pd.DataFrame) -> pd.DataFrame:
    from ..protocols.base import _with_ids

    return _with_ids(responses)


def to_ratings(protocol, verdicts: pd.DataFrame, responses: pd.DataFrame) -> pd.DataFrame:
    """A ratings table (:data:`RATINGS_COLUMNS`) from a pointwise protocol's valid verdicts: one score per
    response (its first), on the 1–7 integer scale (see the module notes); ``protocol_score`` unmapped."""
    scores = protocol.scores(verdicts)
    if scores is None:
        raise ValueError(f"protocol {protocol.name} gives no per-response scores: it cannot train a regression RM")
    scores = scores.dropna(subset=["score"]).drop_duplicates("response_id")
    low, high = _scale(protocol)
    raw = scores["score"].astype(float).to_numpy()
    mapped = np.floor(1 + 6 * (raw - low) / (high - low) + 0.5).astype(int) if len(raw) else np.zeros(0, int)
    resp = _responses(responses).drop_duplicates("response_id").set_index("response_id")
    ids = scores["response_id"].to_numpy()
    return pd.DataFrame({"instruction_id": scores["instruction_id"].to_numpy(), "response_id": ids,
                         "instruction": resp.loc[ids, "instruction"].to_numpy(),
                         "input": resp.loc[ids, "input"].to_numpy(), "response": resp.loc[ids, "response"].to_numpy(),
                         "score": mapped, "protocol_score": raw}, columns=RATINGS_COLUMNS)


def to_pairs(protocol, verdicts: pd.DataFrame, responses: pd.DataFrame) -> pd.DataFrame:
    """A rankings table (:data:`PAIRS_COLUMNS`: what 05's Bradley–Terry RM reads) of the protocol's implied pairs
    (:func:`sflib.protocols.study.preference_pairs`), ``strength`` = the share of the preference for response 1."""
    from ..protocols.compare import ProtocolRun
    from ..protocols.study import preference_pairs

    run = ProtocolRun(protocol, verdicts)
    out = preference_pairs(run, _responses(responses))
    out["strength"] = run.pairs["strength"].to_numpy()
    return out[PAIRS_COLUMNS].reset_index(drop=True)


def convert(protocol, verdicts: pd.DataFrame, responses: pd.DataFrame) -> pd.DataFrame:
    """The training table of a protocol's verdicts: :func:`to_ratings` or :func:`to_pairs` by :func:`kind_of`."""
    return (to_ratings if kind_of(protocol) == "ratings" else to_pairs)(protocol, verdicts, responses)


def implied_pairs(table: pd.DataFrame) -> pd.DataFrame:
    """The pairs a converted table implies, as a rankings table: itself for a pairs table; for a ratings table
    the pairs of its unmapped ``protocol_score`` (higher wins; equal: ``equal``)."""
    if "decision" in table:
        return table
    from ..protocols.base import pairs_from_scores

    p = pairs_from_scores(table.drop(columns=["score"]).rename(columns={"protocol_score": "score"}))
    texts = table.drop_duplicates("response_id").set_index("response_id")
    return pd.DataFrame({"instruction_id": p["instruction_id"].to_numpy(),
                         "response_id_1": p["response_id_1"].to_numpy(), "response_id_2": p["response_id_2"].to_numpy(),
                         "instruction": texts.loc[p["response_id_1"], "instruction"].to_numpy(),
                         "input": texts.loc[p["response_id_1"], "input"].to_numpy(),
                         "response1": texts.loc[p["response_id_1"], "response"].to_numpy(),
                         "response2": texts.loc[p["response_id_2"], "response"].to_numpy(),
                         "decision": p["decision"].to_numpy(), "valid": True, "strength": p["strength"].to_numpy()},
                        columns=PAIRS_COLUMNS)


@dataclass
class ProtocolData:
    """One protocol's feedback for 05: its training table (empty, with ``why``, when it has none)."""

    name: str
    kind: str
    conversion: str
    table: pd.DataFrame
    asked: int = 0                 # judge calls (verdicts)
    valid: int = 0                 # with a readable answer
    failed: int = 0                # calls without an answer (a re-run of 05 asks them again)
    why: str = ""                  # why no RM can be trained from it
    info: dict = field(default_factory=dict)


def collect(study, progress: bool = False) -> dict[str, ProtocolData]:
    """Every ``reward_models.protocols`` protocol's answers on 01's responses (through the store; see the
    module notes), converted."""
    from ..protocols import get_protocol
    from ..protocols.study import collect as ask

    wanted = names(study.config)
    if not wanted:
        return {}
    runs, skipped = ask(study, names=wanted, progress=progress)
    responses = study.read("responses")
    out = {}
    for name in wanted:
        protocol = get_protocol(name)
        kind, how = kind_of(protocol), conversion(protocol)
        if name not in runs:
            out[name] = ProtocolData(name, kind, how, pd.DataFrame(), why=skipped.get(name, "not collected"))
            continue
        v = runs[name].verdicts
        table = convert(protocol, v, responses)
        valid = int(v["valid"].fillna(False).astype(bool).sum()) if len(v) else 0
        failed = int((v["status"] == "failed").sum()) if len(v) and "status" in v else 0
        data = ProtocolData(name, kind, how, table, asked=len(v), valid=valid, failed=failed)
        if not len(table):
            data.why = f"no valid {name} answer from the judge ({len(v)} asked)"
        out[name] = data
    return out


def from_saved(study, files: list[str]) -> dict[str, ProtocolData]:
    """The converted tables 05 saved (``protocol_<name>.jsonl``), read back: nothing is asked."""
    import json

    from ..protocols import get_protocol

    metrics = json.loads(study.path_of("reward_models", "metrics.json").read_text(encoding="utf-8"))
    saved = metrics.get("protocols") or {}
    out = {}
    for name in names(study.config):
        protocol = get_protocol(name)
        info = saved.get(name) or {}
        table = (study.read("reward_models", f"protocol_{name}") if f"protocol_{name}.jsonl" in files
                 else pd.DataFrame())
        out[name] = ProtocolData(name, kind_of(protocol), conversion(protocol), table, asked=info.get("asked", 0),
                                 valid=info.get("valid", 0), why=info.get("why", ""))
    return out


def split(data: dict[str, ProtocolData], val_ids: set) -> dict:
    """``{name: (train, held-out)}`` by 05's held-out instructions (the ratings and rankings RMs' split)."""
    from .objectives import split_by_instruction

    return {n: (split_by_instruction(d.table, val_ids=val_ids) if len(d.table) else (d.table, d.table))
            for n, d in data.items()}


def train(data: dict[str, ProtocolData], splits: dict, work, settings: dict) -> tuple[dict, dict]:
    """``({name: TrainResult or None}, {name: why not / warnings})``: each trained into ``work/<name>``."""
    from ..study.findings import attempt_quietly
    from .training import train_reward_model

    results, notes = {}, {}
    for name, d in data.items():
        if d.why:
            results[name], notes[name] = None, d.why
            continue
        tr, held = splits[name]
        got = attempt_quietly(train_reward_model, d.kind, tr, work / name, eval=held, **settings)
        results[name], notes[name] = got.value, (got.reason or "; ".join(got.notes) or "")
    return results, notes


def own_held_out(rms: dict, data: dict[str, ProtocolData], splits: dict) -> pd.DataFrame:
    """Per protocol: what it trained on and, for a trained RM, its pairwise accuracy on its own protocol's
    implied pairs on the held-out instructions (ties left out; equal rewards count one half)."""
    from .metrics import pairwise_accuracy

    rows = []
    for name, d in data.items():
        tr, held = splits.get(name, (pd.DataFrame(), pd.DataFrame()))
        pairs = implied_pairs(held) if len(held) else pd.DataFrame(columns=PAIRS_COLUMNS)
        row = {"reward model": f"{name} RM", "protocol": name, "objective": d.kind, "conversion": d.conversion,
               "judge calls": d.asked, "valid answers": d.valid, "training rows": len(tr), "held-out rows": len(held),
               "trained": name in rms, "held-out pairs": 0, "accuracy": float("nan")}
        if d.kind == "rankings":
            row["ties (left out)"] = int((d.table["decision"] == "equal").sum()) if len(d.table) else 0
        if d.conversion.startswith("5-way") and len(d.table):  # |mean strength| on the −2..2 scale
            row["strong (|mean| >= 1)"] = int(((d.table["strength"].astype(float) - 0.5).abs() * 4 >= 1).sum())
        if name in rms and len(pairs):
            acc = pairwise_accuracy(rms[name], pairs)
            row.update({"held-out pairs": acc["n_pairs"], "accuracy": acc["pairwise_accuracy"]})
        row["note"] = d.why
        rows.append(row)
    return pd.DataFrame(rows).set_index("reward model") if rows else pd.DataFrame()


def metrics_info(data: dict[str, ProtocolData], own: pd.DataFrame) -> dict:
    """What ``metrics.json`` keeps of each protocol (read back by :func:`from_saved`)."""
    return {n: {"kind": d.kind, "conversion": d.conversion, "asked": d.asked, "valid": d.valid, "failed": d.failed,
                "rows": len(d.table),
                "why": d.why, **({k: (None if isinstance(v, float) and np.isnan(v) else v)
                                  for k, v in own.loc[f"{n} RM"].items() if k in ("held-out pairs", "accuracy")}
                                 if len(own) and f"{n} RM" in own.index else {})}
            for n, d in data.items()}


def add_findings(f, run) -> None:
    """05's findings for the protocol RMs: the ``protocol reward models`` table, each RM's accuracy on its own
    protocol's held-out pairs (Wilson 95%, chance 50%) and a note per conversion."""
    from .findings import accuracy_estimate

    own = getattr(run, "protocol_held_out", None)
    if own is None or not len(own):
        f.absent["protocol reward models"] = "the study names no reward_models.protocols (see docs/protocols.md)"
        return
    f.tables["protocol reward models"] = own
    for name, r in own.iterrows():
        f.counts[f"{r['protocol']}: judge calls for its RM"] = int(r["judge calls"])
        f.counts[f"{r['protocol']}: valid answers"] = int(r["valid answers"])
        if r["trained"]:
            e = accuracy_estimate(f"{name} on its own protocol's held-out pairs", r["accuracy"], int(r["held-out pairs"]))
            f.estimates.append(e)
    for name, r in own.iterrows():
        if 0 < r["valid answers"] < r["judge calls"]:
            f.notes.append(f"{r['protocol']}: {r['judge calls'] - r['valid answers']} of {r['judge calls']} answers could "
                           f"not be read or failed; {name} trained on the rest (a failed call is asked again when 05 "
                           "runs again; the store keeps every answer).")
    for conv in dict.fromkeys(own["conversion"]):
        which = ", ".join(own.index[own["conversion"] == conv])
        f.notes.append(f"{which}: {conv}.")
    f.notes.append("Every protocol RM is trained with the ratings and rankings RMs' trainer, settings and split by "
                   "instruction; the held-out table scores it on the same held-out 02/03 feedback as they are, the "
                   "protocol table on its own protocol's held-out pairs.")


__all__ = ["ProtocolData", "add_findings", "collect", "conversion", "convert", "from_saved", "implied_pairs",
           "kind_of", "metrics_info", "names", "own_held_out", "split", "to_pairs", "to_ratings", "train",
           "trained_kind"]
