"""What a study will cost before it runs (:func:`plan`), and where it stands (:func:`status`).

Estimates, stated plainly:

- **tokens** are characters / 4, rounded up per stage (OpenAI's rule of thumb for English). A
  judge call's prompt is the rendered template (system + user message) with the real instruction,
  input and reference texts; a response that does not exist yet is counted as ``max_new_tokens``
  x 4 characters (an upper bound). A policy call's prompt is the Alpaca prompt; a policy on a
  server asks an instruction's k samples in one request with ``n`` (one call, the prompt counted
  once) unless its file says ``n_per_request: false``.
- **replies**: a policy writes ``max_new_tokens`` per call (an upper bound); a judge reply is
  counted as :data:`JUDGE_REPLY_TOKENS` tokens (a score or a choice plus a short reason), or the
  judge's ``max_tokens`` when that is smaller.
- **dollars** from the judge / policy price (USD per 1M input and output tokens); a judge stage whose
  study section says ``mode: batch`` (``feedback.mode``, ``evaluation.mode``) is priced at the judge's
  batch prices (``price_batch_input_per_mtok`` / ``price_batch_output_per_mtok``); ``local``,
  ``recorded`` and ``human`` cost nothing; an unknown price gives NaN and says so.
- **stored**: a stage whose output is written and current has everything stored. Ratings and
  rankings are looked up by their exact cache keys once the responses are written (0 before: the
  store is shared by studies, and another study's answers are not this one's). An evaluation
  not written yet counts nothing as stored (its outputs come from best-of-n): its dollars are an
  upper bound; what the store already holds is not paid again when it runs.
- When ``instructions.sample`` asks for more instructions than the files hold, the plan counts
  the requested number with the files' mean lengths and says so in ``note``.
"""
from __future__ import annotations

import math
import sqlite3

import numpy as np
import pandas as pd

from ..core.prompts import alpaca_prompt
from ..feedback.ratings import render_messages, task_block, template_version
from .config import STAGES, _resolve
from .folder import STAGE_INFO
from .inputs import available_instructions, evaluation_instructions, stable_sample

JUDGE_REPLY_TOKENS = 64
CHARS_PER_TOKEN = 4
FREE = {"local": "local model: nothing to pay", "recorded": "recorded answers: nothing to pay",
        "human": "human annotators: no API cost"}
PLAN_COLUMNS = ["stage", "notebook", "kind", "name", "mode", "calls", "stored", "input_tokens", "output_tokens",
                "usd", "usd_to_pay", "note"]


def _tokens(chars: float) -> int:
    return int(math.ceil(chars / CHARS_PER_TOKEN))


def _msg_chars(messages: list[dict]) -> int:
    return sum(len(m["content"]) for m in messages)


def rating_chars(template: str, instruction: str, input: str, response: str) -> int:
    return _msg_chars(render_messages(template, task=task_block(instruction, input), response=response))


def ranking_chars(template: str, instruction: str, input: str, first: str, second: str) -> int:
    return _msg_chars(render_messages(template, task=task_block(instruction, input), output_a=first, output_b=second))


def judge_name(settings: dict, name: str) -> str:
    """The name a judge is stored under in the annotation store (``provider:model``)."""
    if settings.get("provider") and settings.get("model") and settings["provider"] != "recorded":
        return f"{settings['provider']}:{settings['model']}"
    return name



def _n_per_request(policy: str) -> bool:
    """Whether a policy's samples of one instruction go in one request with ``n`` (a server policy
    whose file does not say ``n_per_request: false``; a server that ignores ``n`` costs more)."""
    settings = _resolve("policy", policy)
    return settings.get("provider") == "openai" and bool(settings.get("n_per_request", True))

class _Planner:
    def __init__(self, study):
        self.study = study
        self.cfg = study.config
        self.rows: list[dict] = []

    def row(self, stage, kind, name, calls, in_chars, out_tokens, template=None, note="", mode="online", stored=None):
        settings = _resolve(kind, name)
        provider = settings.get("provider") or name.partition(":")[0]
        calls = int(calls)
        in_tok = _tokens(in_chars)
        out_tok = int(out_tokens)
        notes = [note] if note else []
        if self.study.state(stage) in ("done", "seeded"):
            stored = calls
        else:  # answers looked up by their exact keys (the feedback stages), else none counted
            stored = min(calls, int(stored or 0))
        if provider in FREE:
            usd = 0.0
            notes.append(FREE[provider])
        else:
            prefix = "price_batch_" if mode == "batch" else "price_"
            pin, pout = settings.get(f"{prefix}input_per_mtok"), settings.get(f"{prefix}output_per_mtok")
            if pin is None or pout is None:
                usd = float("nan")
                notes.append(f"{mode} price of {name} unknown: give it in the judge/policy file or SFLIB_PRICES")
            else:
                usd = (in_tok * pin + out_tok * pout) / 1e6
        to_pay = 0.0 if calls == 0 else usd * (calls - stored) / calls
        self.rows.append(dict(stage=stage, notebook=STAGE_INFO[stage][0], kind=kind, name=name, mode=mode,
                              calls=calls, stored=stored, input_tokens=in_tok, output_tokens=out_tok, usd=usd,
                              usd_to_pay=to_pay, note="; ".join(notes)))

    def empty(self, stage, note):
        self.rows.append(dict(stage=stage, notebook=STAGE_INFO[stage][0], kind="", name="", mode="", calls=0, stored=0,
                              input_tokens=0, output_tokens=0, usd=0.0, usd_to_pay=0.0, note=note))

    def seeded(self, stage) -> bool:
        if stage in self.cfg.seeded_from_data:
            self.empty(stage, "seeded from data/canonical (the paper's released data)")
            return True
        return False

    def judge_reply(self, name) -> int:
        max_tokens = _resolve("judge", name).get("max_tokens")
        return min(JUDGE_REPLY_TOKENS, max_tokens) if max_tokens else JUDGE_REPLY_TOKENS

    # ----------------------------------------------------------------------- feedback
    def feedback_items(self):
        """(per-instruction texts, scale, note): the instructions and their responses (or placeholders)."""
        cfg = self.cfg
        placeholder = "x" * (cfg.policy.max_new_tokens * CHARS_PER_TOKEN)
        if self.study.state("responses") in ("done", "seeded"):
            resp = self.study.read("responses")
            groups = [(g["instruction"].iloc[0], g["input"].iloc[0], list(g["response"]))
                      for _, g in resp.drop_duplicates("response_id").groupby("instruction_id", sort=False)]
            return groups, 1.0, "responses as written by stage responses"
        df = available_instructions(self.study)
        sample, note = cfg.instructions.sample, ""
        df = stable_sample(df, sample, cfg.seed)
        scale = 1.0
        if sample is not None and sample > len(df):
            scale = sample / max(len(df), 1)
            note = f"the instruction files hold {len(df)}; counted {sample} at their mean length"
        groups = [(i, x, [placeholder] * cfg.policy.k) for i, x in zip(df["instruction"], df["input"])]
        return groups, scale, note

    def responses(self, groups, scale, note):
        if self.seeded("responses"):
            return
        p = self.cfg.policy
        n = len(groups) * scale
        per = 1 if p.k > 1 and _n_per_request(p.name) else p.k  # requests (and prompts paid) per instruction
        chars = sum(len(alpaca_prompt(i, x)) for i, x, _ in groups) * per * scale
        if per == 1 and p.k > 1:
            note = "; ".join(filter(None, [note, f"k={p.k} samples in one request with n (prompt paid once)"]))
        self.row("responses", "policy", p.name, round(n * per), chars, round(n * p.k) * p.max_new_tokens, note=note)

    def ratings(self, groups, scale, note):
        if self.seeded("ratings"):
            return
        fb = self.cfg.feedback
        calls = sum(len(r) for _, _, r in groups) * scale
        chars = sum(rating_chars(fb.rating_template, i, x, t) for i, x, rs in groups for t in rs) * scale
        for judge in [fb.judge, *fb.extra_judges]:
            self.row("ratings", "judge", judge, round(calls), chars, round(calls) * self.judge_reply(judge),
                     fb.rating_template, note, mode=fb.mode, stored=self.stored_feedback("ratings", judge))

    def rankings(self, groups, scale, note):
        if self.seeded("rankings"):
            return
        fb = self.cfg.feedback
        orders = 2 if fb.both_orders else 1
        calls, chars = 0, 0
        for i, x, rs in groups:
            for a in range(len(rs)):
                for b in range(a + 1, len(rs)):
                    calls += orders
                    chars += ranking_chars(fb.ranking_template, i, x, rs[a], rs[b])
                    if orders == 2:
                        chars += ranking_chars(fb.ranking_template, i, x, rs[b], rs[a])
        calls, chars = round(calls * scale), chars * scale
        # only the feedback judge ranks: extra_judges rate (notebook 02's per-judge comparison)
        self.row("rankings", "judge", fb.judge, calls, chars, calls * self.judge_reply(fb.judge),
                 fb.ranking_template, note, mode=fb.mode, stored=self.stored_feedback("rankings", fb.judge))

    def stored_feedback(self, stage: str, judge: str) -> int:
        """How many of the stage's requests to ``judge`` have an answer in the store, by their exact cache
        keys: the store is shared by studies, so counting a judge's answers would count other studies'.
        0 while the responses are not written (no answer to them can be stored yet)."""
        if self.study.state("responses") not in ("done", "seeded") or not self.study.store_path.exists():
            return 0
        from ..feedback.annotate import request_key
        from ..feedback.rankings import make_pairs, ranking_request
        from ..feedback.ratings import rating_request, resolve_judge

        fb, resp = self.cfg.feedback, self.study.read("responses")
        if stage == "ratings":
            repeats = resp.groupby(["instruction_id", "response_id"], sort=False).cumcount()
            requests = [rating_request(i, x, r, fb.rating_template, k)
                        for i, x, r, k in zip(resp["instruction"], resp["input"], resp["response"], repeats)]
        else:
            pairs = make_pairs(resp)
            requests = [ranking_request(i, x, a, b, order, fb.ranking_template)
                        for order in (["12", "21"] if fb.both_orders else ["12"])
                        for i, x, a, b in zip(pairs["instruction"], pairs["input"], pairs["response1"], pairs["response2"])]
        try:
            j = resolve_judge(judge)
        except Exception:  # e.g. a human judge: no cache keys to look up
            return 0
        version = template_version(fb.rating_template if stage == "ratings" else fb.ranking_template)
        keys = [request_key(j, r, version) for r in requests]
        con = sqlite3.connect(f"file:{self.study.store_path}?mode=ro", uri=True)
        try:
            found: set[str] = set()
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                found |= {k for (k,) in con.execute(
                    f"SELECT key FROM annotations WHERE status IN ('ok','invalid') AND key IN ({','.join('?' * len(chunk))})",
                    chunk)}
        except sqlite3.Error:
            return 0
        finally:
            con.close()
        return sum(k in found for k in keys)

    # ----------------------------------------------------------------------- best-of-n and evaluation
    def best_of_n(self, ev):
        if self.seeded("best_of_n"):
            return
        b = self.cfg.best_of_n
        name = b.policy or self.cfg.policy.name
        per = 1 if b.n > 1 and _n_per_request(name) else b.n
        calls = len(ev) * per
        chars = sum(len(alpaca_prompt(i)) for i in ev["instruction"]) * per
        how = f"n={b.n} in one request each (prompt paid once)" if per == 1 and b.n > 1 else f"n={b.n}"
        self.row("best_of_n", "policy", name, calls, chars, len(ev) * b.n * b.max_new_tokens,
                 note=f"{len(ev)} instructions x {how}; reward-model scoring is local")

    def evaluation(self, ev):
        e, fb = self.cfg.evaluation, self.cfg.feedback
        if "evaluation" in self.cfg.seeded_from_data:  # nothing is asked: list what exists, not 553 x 7 calls
            from .seed import SEED_TABLES, canonical

            n = sum(len(canonical(src)) for src in SEED_TABLES["evaluation"].values())
            self.empty("evaluation", f"seeded from data/canonical: the paper's {n:,} recorded judgments "
                                     "(ratings and rankings rows); nothing is asked")
            return
        if self.cfg.best_of_n.policy == "recorded" or "best_of_n" in self.cfg.seeded_from_data:
            outputs = self._seeded_outputs(ev)
        else:
            outputs = {p: ["x" * (self.cfg.best_of_n.max_new_tokens * CHARS_PER_TOKEN)] * len(ev) for p in e.policies}
        calls, chars = 0, 0
        ins, refs = list(ev["instruction"]), list(ev["output"])
        if "rating" in e.protocols:
            calls += len(ev) * (len(e.policies) + 1)
            chars += sum(rating_chars(fb.rating_template, i, "", r) for i, r in zip(ins, refs))
            chars += sum(rating_chars(fb.rating_template, i, "", o) for p in e.policies
                         for i, o in zip(ins, outputs[p]))
        if "ranking" in e.protocols:
            calls += len(ev) * len(e.policies) * 2
            chars += sum(ranking_chars(fb.ranking_template, i, "", r, o) + ranking_chars(fb.ranking_template, i, "", o, r)
                         for p in e.policies for i, r, o in zip(ins, refs, outputs[p]))
        note = (f"{len(ev)} instructions x {len(e.policies)} policies; rating: policies + reference rated once, "
                f"ranking: both orders")
        if "evaluation" in self.cfg.seeded_from_data:
            note += "; recorded judgments seeded from data/canonical"
        self.row("evaluation", "judge", e.judge, calls, chars, calls * self.judge_reply(e.judge),
                 fb.rating_template, note, mode=e.mode)

    def _seeded_outputs(self, ev) -> dict[str, list[str]]:
        from .seed import SEED_TABLES, canonical

        out = {}
        for p in self.cfg.evaluation.policies:
            src = SEED_TABLES["best_of_n"].get(f"{p}_outputs")
            texts = (canonical(src).drop_duplicates("instruction").set_index("instruction")["output"]
                     if src else pd.Series(dtype=str))
            out[p] = [str(texts.get(i, "")) for i in ev["instruction"]]
        return out


def plan(study, total: bool = True) -> pd.DataFrame:
    """One row per stage and judge/policy: calls, stored, tokens, dollars (see the module notes)."""
    p = _Planner(study)
    groups, scale, note = p.feedback_items()
    p.responses(groups, scale, note)
    p.ratings(groups, scale, note)
    p.rankings(groups, scale, note)
    p.empty("consistency", "local computation")
    p.empty("reward_models", f"local training ({study.config.reward_models.backbone})")
    ev = evaluation_instructions(study)
    p.best_of_n(ev)
    p.evaluation(ev)
    p.rows += protocol_rows(study, groups, scale, note)
    df = pd.DataFrame(p.rows, columns=PLAN_COLUMNS)
    if total:
        tot = {c: df[c].sum()  # unknown prices (NaN) are left out of the dollars and named in the note
               for c in ("calls", "stored", "input_tokens", "output_tokens", "usd", "usd_to_pay")}
        unknown = sorted(set(df.loc[df["usd"].isna(), "name"]))
        note = f"plus the calls of {', '.join(unknown)} (price unknown)" if unknown else ""
        df = pd.concat([df, pd.DataFrame([dict(stage="total", notebook="", kind="", name="", mode="", note=note,
                                                **tot)])],
                       ignore_index=True)
    return df


def protocol_rows(study, groups, scale: float, note: str) -> list[dict]:
    """Stage 09's rows: one per feedback protocol of the study (:func:`sflib.protocols.plan.plan_rows`)."""
    from ..protocols.plan import plan_rows

    return plan_rows(study, groups, scale, note)


def stage_cost(plan_df: pd.DataFrame, stage: str) -> float:
    """Dollars still to pay for ``stage`` in a plan (NaN when a price is unknown)."""
    rows = plan_df[plan_df["stage"] == stage]
    return float(rows["usd_to_pay"].sum(min_count=1)) if len(rows) else 0.0


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
        has_batches = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'batch_requests'").fetchone()
        batched = ("a.key IN (SELECT key FROM batch_requests WHERE state = 'done')" if has_batches else "0")
        rows = {(j, bool(b)): (p, c) for j, b, p, c in con.execute(
            f"SELECT a.judge, {batched} AS batched, SUM(a.prompt_tokens), SUM(a.completion_tokens) "
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
        except Exception:  # a policy file gone since: the cost is simply unknown
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
            detail = "seeded from data/canonical on the first read or run"
        if counts.get("reasons"):
            detail = (detail + "; " if detail else "") + f"reasons: {counts['reasons']}"
        rows.append(dict(stage=stage, notebook=STAGE_INFO[stage][0], state=state,
                         n=counts.get("n", np.nan), valid=counts.get("valid", np.nan),
                         invalid=counts.get("invalid", np.nan), failed=counts.get("failed", np.nan),
                         spent_usd=_recorded_cost(study, stage, state, m), written=m.get("time", ""),
                         folder=str(study.stage_dir(stage)), detail=detail))
    rows.append(dict(stage="total", notebook="", state="", n=np.nan, valid=np.nan, invalid=np.nan, failed=np.nan,
                     spent_usd=spent(study), written="", folder=str(study.folder),
                     detail=f"spent: the annotation store {study.store_path} for this study's judges"))
    return pd.DataFrame(rows, columns=STATUS_COLUMNS)
