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

import json
import math
import sqlite3

import pandas as pd

from ..core.prompts import alpaca_prompt
from ..feedback.ratings import template_version
from .config import _resolve
from .folder import STAGE_INFO
from .inputs import available_instructions, evaluation_instructions, stable_sample
# the prompt character counts and the status half live in their own modules; their names stay importable here
from .prompt_chars import _Chars, _chars, _msg_chars, ranking_chars, rating_chars  # noqa: F401
from .status import (FREE, STATUS_COLUMNS, _recorded_cost, _unrecorded_cost, judge_name, spent,  # noqa: F401
                     status)

JUDGE_REPLY_TOKENS = 64
CHARS_PER_TOKEN = 4
PLAN_COLUMNS = ["stage", "notebook", "kind", "name", "mode", "calls", "stored", "input_tokens", "output_tokens",
                "usd", "usd_to_pay", "note"]


def _tokens(chars: float) -> int:
    return int(math.ceil(chars / CHARS_PER_TOKEN))


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
        else:  # answers looked up by their exact keys (the feedback stages; only now: it costs), else none
            stored = min(calls, int((stored() if callable(stored) else stored) or 0))
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
        if stage not in self.cfg.seeded_from_data:
            return False
        hub = self.cfg.seeded_from_hub
        if hub is not None and stage in hub.stages:
            from ..io import hub as hf

            files = hf.STAGE_FILES[stage]
            todo = [f for f in files if f in hf.SIZES_MB and not hf.cached(f, hub.repo, hub.revision)]
            got = (f"to download: ~{sum(hf.SIZES_MB[f] for f in todo):.0f} MB into {hf.cache_dir()}" if todo
                   else f"in the Hub cache {hf.cache_dir()}")
            self.empty(stage, f"recorded feedback, nothing to pay: {', '.join(files)} from the Hub dataset "
                              f"{hub.repo}@{hub.revision} ({got})")
        else:
            self.empty(stage, "seeded from data/canonical (the paper's released data)")
        return True

    def judge_reply(self, name) -> int:
        max_tokens = _resolve("judge", name).get("max_tokens")
        return min(JUDGE_REPLY_TOKENS, max_tokens) if max_tokens else JUDGE_REPLY_TOKENS

    # ----------------------------------------------------------------------- feedback
    def feedback_items(self):
        """(sizes, scale, note): calls and prompt characters of the responses, ratings and rankings stages
        (:meth:`sizes`), from the written responses or from the instructions with placeholder responses.
        With the responses written, the sizes are kept in ``<study folder>/.plan_sizes.json`` under the
        hash of the responses' manifest and the templates: a later plan does not read 25,000 responses
        again (``study plan`` stays within seconds at the paper's scale)."""
        cfg = self.cfg
        if self.study.state("responses") in ("done", "seeded"):
            note = "responses as written by stage responses"
            key = self._sizes_key()
            cached = self._cached_sizes(key)
            if cached is not None:
                return cached, 1.0, note
            sizes = self.sizes(self.feedback_groups())
            self._store_sizes(key, sizes)
            return sizes, 1.0, note
        df = available_instructions(self.study)
        sample, note = cfg.instructions.sample, ""
        scale = 1.0
        if sample is not None and sample > len(df):
            scale = sample / max(len(df), 1)
            note = f"the instruction files hold {len(df)}; counted {sample} at their mean length"
        return self.sizes(self.feedback_groups()), scale, note

    def feedback_groups(self) -> list[tuple]:
        """``(instruction, input, [responses])`` per instruction: the written responses, or the sampled
        instructions with placeholder responses of ``max_new_tokens`` (stages 02/03 and notebook 09's
        protocols are priced on them)."""
        cfg = self.cfg
        if self.study.state("responses") in ("done", "seeded"):
            resp = self.study.read("responses").drop_duplicates("response_id")
            iids, ins, inp, texts = (resp[c].tolist() for c in ("instruction_id", "instruction", "input", "response"))
            by: dict = {}
            for iid, i, x, t in zip(iids, ins, inp, texts):
                by.setdefault(iid, (i, x, []))[2].append(t)
            return list(by.values())
        placeholder = "x" * (cfg.policy.max_new_tokens * CHARS_PER_TOKEN)
        df = stable_sample(available_instructions(self.study), cfg.instructions.sample, cfg.seed)
        return [(i, x, [placeholder] * cfg.policy.k) for i, x in zip(df["instruction"], df["input"])]

    def sizes(self, groups) -> dict:
        """Instructions, Alpaca-prompt characters, and (calls, prompt characters) of ratings and rankings."""
        fb = self.cfg.feedback
        orders = 2 if fb.both_orders else 1
        r_calls, r_chars, k_calls, k_chars = 0, 0, 0, 0
        for i, x, rs in groups:
            r_calls += len(rs)
            r_chars += sum(rating_chars(fb.rating_template, i, x, t) for t in rs)
            for a in range(len(rs)):
                for b in range(a + 1, len(rs)):
                    k_calls += orders
                    k_chars += ranking_chars(fb.ranking_template, i, x, rs[a], rs[b])
                    if orders == 2:
                        k_chars += ranking_chars(fb.ranking_template, i, x, rs[b], rs[a])
        return {"instructions": len(groups), "alpaca_chars": sum(len(alpaca_prompt(i, x)) for i, x, _ in groups),
                "ratings": [r_calls, r_chars], "rankings": [k_calls, k_chars]}

    def _sizes_key(self) -> str:
        fb = self.cfg.feedback
        return json.dumps([self.study.manifest_hash("responses"), template_version(fb.rating_template),
                           template_version(fb.ranking_template), fb.both_orders, CHARS_PER_TOKEN])

    def _sizes_path(self):
        return self.study.folder / ".plan_sizes.json"

    def _cached_sizes(self, key: str) -> dict | None:
        try:
            saved = json.loads(self._sizes_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return saved.get("sizes") if isinstance(saved, dict) and saved.get("key") == key else None

    def _store_sizes(self, key: str, sizes: dict) -> None:
        from ..core.data import atomic_write_text

        try:
            atomic_write_text(self._sizes_path(), json.dumps({"key": key, "sizes": sizes}))
        except OSError:  # a read-only study folder: the plan is only slower next time
            pass

    def responses(self, sizes, scale, note):
        if self.seeded("responses"):
            return
        p = self.cfg.policy
        n = sizes["instructions"] * scale
        per = 1 if p.k > 1 and _n_per_request(p.name) else p.k  # requests (and prompts paid) per instruction
        chars = sizes["alpaca_chars"] * per * scale
        if per == 1 and p.k > 1:
            note = "; ".join(filter(None, [note, f"k={p.k} samples in one request with n (prompt paid once)"]))
        self.row("responses", "policy", p.name, round(n * per), chars, round(n * p.k) * p.max_new_tokens, note=note)

    def ratings(self, sizes, scale, note):
        if self.seeded("ratings"):
            return
        fb = self.cfg.feedback
        calls, chars = (v * scale for v in sizes["ratings"])
        for judge in [fb.judge, *fb.extra_judges]:
            self.row("ratings", "judge", judge, round(calls), chars, round(calls) * self.judge_reply(judge),
                     fb.rating_template, note, mode=fb.mode,
                     stored=lambda judge=judge: self.stored_feedback("ratings", judge))

    def rankings(self, sizes, scale, note):
        if self.seeded("rankings"):
            return
        fb = self.cfg.feedback
        calls, chars = round(sizes["rankings"][0] * scale), sizes["rankings"][1] * scale
        # only the feedback judge ranks: extra_judges rate (notebook 02's per-judge comparison)
        self.row("rankings", "judge", fb.judge, calls, chars, calls * self.judge_reply(fb.judge),
                 fb.ranking_template, note, mode=fb.mode, stored=lambda: self.stored_feedback("rankings", fb.judge))

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
            # by primary key only, the status checked here: a WHERE on status lets SQLite answer through
            # the status index, scanning every stored row per chunk (quadratic: 57 s at 125k answers)
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                found |= {k for k, st in con.execute(
                    f"SELECT key, status FROM annotations WHERE key IN ({','.join('?' * len(chunk))})", chunk)
                          if st in ("ok", "invalid")}
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
    sizes, scale, note = p.feedback_items()
    p.responses(sizes, scale, note)
    p.ratings(sizes, scale, note)
    p.rankings(sizes, scale, note)
    p.empty("consistency", "local computation")
    p.empty("reward_models", f"local training ({study.config.reward_models.backbone})")
    if study.config.reward_models.protocols:  # the protocol answers 05 asks for its protocol RMs
        from ..protocols.plan import rm_plan_rows

        p.rows += rm_plan_rows(study, p.feedback_groups(), scale, note)
    ev = evaluation_instructions(study)
    p.best_of_n(ev)
    p.evaluation(ev)
    if getattr(study.config.feedback, "protocols", None):  # notebook 09's extra protocols
        p.rows += protocol_rows(study, p.feedback_groups(), scale, note)
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


