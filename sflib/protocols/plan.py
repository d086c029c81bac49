"""What each protocol of a study costs before it runs: one plan row per protocol (stage ``protocols``,
notebook 09). Calls are counted exactly from the protocol's requests (``rating-1-7``, ``rubric``: k per
instruction; ``pairwise-3way`` / ``pairwise-5way`` in both orders: k(k−1); ``listwise-k``: 1); prompt
tokens are the rendered messages' characters / 4 (a response not written yet: ``max_new_tokens`` × 4
characters); reply tokens the protocol's ``reply_tokens`` (at most the judge's ``max_tokens``).
``rating-1-7`` and ``pairwise-3way`` with stage 02/03's templates are those stages' very calls: a row with
0 calls says so (they are counted once, in 02/03). A study without ``feedback.protocols`` has no rows here.
The protocols of ``reward_models.protocols`` are asked by stage 05 (:mod:`sflib.rm.protocols`): their rows are
stage ``reward_models`` (:func:`rm_plan_rows`, checked against the budget before notebook 05), and 09's row of
the same protocol has 0 calls ("counted there"): nothing is counted twice."""
from __future__ import annotations

import math

import pandas as pd

from . import get_protocol

CHARS_PER_TOKEN = 4


def study_protocols(cfg) -> list[str]:
    """The protocol names a study collects (``feedback.protocols``; default: the paper's two)."""
    return list(getattr(cfg.feedback, "protocols", None) or ["rating-1-7", "pairwise-3way"])


def reuses_stage(protocol, cfg) -> str | None:
    """``ratings`` / ``rankings`` when the protocol is the very requests of stage 02 / 03, else None."""
    from .pairwise import Pairwise3Way
    from .pointwise import Rating

    if type(protocol) is Rating and protocol.template == cfg.feedback.rating_template:
        return "ratings"
    if type(protocol) is Pairwise3Way and protocol.template == cfg.feedback.ranking_template \
            and bool(protocol.spec.get("both_orders", True)) == cfg.feedback.both_orders:
        return "rankings"
    return None


def groups_frame(groups) -> pd.DataFrame:
    """A responses table from the planner's ``(instruction, input, [responses])`` groups (ids by position,
    so placeholder texts stay distinct responses)."""
    rows = [{"instruction_id": f"i{n}", "response_id": f"i{n}r{j}", "instruction": i, "input": x, "response": r}
            for n, (i, x, rs) in enumerate(groups) for j, r in enumerate(rs)]
    return pd.DataFrame(rows, columns=["instruction_id", "response_id", "instruction", "input", "response"])


def plan_rows(study, groups, scale: float = 1.0, note: str = "") -> list[dict]:
    """Plan rows (the planner's columns) for every protocol of the study (stage ``protocols``, notebook 09). A
    protocol stage 05 also asks (``reward_models.protocols``) is counted there: its row here has 0 calls."""
    cfg = study.config
    if not getattr(cfg.feedback, "protocols", None):
        return []  # the paper's two protocols only: stages 02/03 are their calls
    in05 = set(rm_protocols(cfg))
    responses = groups_frame(groups)
    return [_row(study, get_protocol(name), responses, scale, note, "protocols", "09_protocols",
                 counted_in="reward_models" if name in in05 else None) for name in study_protocols(cfg)]


def rm_protocols(cfg) -> list[str]:
    """The protocols stage 05 trains reward models from (``reward_models.protocols``)."""
    return list(getattr(getattr(cfg, "reward_models", None), "protocols", None) or [])


def rm_plan_rows(study, groups, scale: float = 1.0, note: str = "") -> list[dict]:
    """Stage 05's rows: one per protocol of ``reward_models.protocols`` (its answers on 01's responses, asked
    through the store by :mod:`sflib.rm.protocols`; notebook 09 then finds them there)."""
    responses = groups_frame(groups)
    return [_row(study, get_protocol(name), responses, scale, note, "reward_models", "05_reward_models")
            for name in rm_protocols(study.config)]


def _row(study, protocol, responses, scale, note, stage, notebook, counted_in=None) -> dict:
    from ..study.config import _resolve

    cfg = study.config
    judge = cfg.feedback.judge
    settings = _resolve("judge", judge)
    provider = settings.get("provider") or judge.partition(":")[0]
    items = list(protocol.items(responses))
    calls = round(len(items) * scale)
    chars = sum(len(m["content"]) for _, msgs in items for m in msgs) * scale
    in_tok = int(math.ceil(chars / CHARS_PER_TOKEN))
    reply = min(protocol.reply_tokens, settings.get("max_tokens") or protocol.reply_tokens)
    out_tok = calls * reply
    notes = [note] if note else []
    reused = reuses_stage(protocol, cfg)
    if provider in ("local", "recorded", "human"):
        usd = 0.0
        notes.append(f"{provider} judge: nothing to pay")
    else:
        pin, pout = settings.get("price_input_per_mtok"), settings.get("price_output_per_mtok")
        usd = float("nan") if pin is None or pout is None else (in_tok * pin + out_tok * pout) / 1e6
    if reused:  # stage 02/03's very calls: counted (and priced) there, not twice
        notes.append(f"the {calls} calls of stage {reused}, counted there")
    elif counted_in:  # asked by stage 05 first (reward_models.protocols): counted there, not twice
        notes.append(f"the {calls} calls stage 05 asks for its {protocol.name} RM, counted there")
    if reused or counted_in:
        calls, in_tok, out_tok, usd = 0, 0, 0, 0.0
    if provider == "recorded" and not reused:
        notes.append("recorded answers exist only for the paper's two protocols: not collected")
    if reused or counted_in:
        stored = 0
    elif stage != "protocols" and study.state(stage) in ("done", "seeded"):
        stored = calls
    else:
        stored = stored_answers(study, protocol, judge)
    return dict(stage=stage, notebook=notebook, kind="judge", name=f"{judge} · {protocol.name}",
                mode="online", calls=calls, stored=min(stored, calls), input_tokens=in_tok,
                output_tokens=out_tok, usd=usd,
                usd_to_pay=0.0 if not calls else usd * (calls - min(stored, calls)) / calls,
                note="; ".join(notes))


def stored_answers(study, protocol, judge: str) -> int:
    """How many of the protocol's requests for the study's written responses the store already answers
    (looked up by their exact cache keys; 0 before 01 is written or for a judge without keys)."""
    import sqlite3

    if study.state("responses") not in ("done", "seeded") or not study.store_path.exists():
        return 0
    from ..feedback.annotate import request_key
    from ..feedback.ratings import resolve_judge

    try:
        j = resolve_judge(judge)
        _, requests = protocol.requests(study.read("responses"))
        keys = [request_key(j, r, protocol.template_version) for r in requests]
        con = sqlite3.connect(f"file:{study.store_path}?mode=ro", uri=True)
    except Exception:  # a human / recorded judge, an unreadable store: nothing counted as stored
        return 0
    try:
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            found |= {k for (k,) in con.execute("SELECT key FROM annotations WHERE status IN ('ok','invalid') AND key "
                                                f"IN ({','.join('?' * len(chunk))})", chunk)}
    except sqlite3.Error:
        return 0
    finally:
        con.close()
    return sum(k in found for k in keys)
