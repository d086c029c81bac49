"""The study's inputs and the calls its first notebooks make.

- tables: the feedback instructions (:func:`instructions`) and the evaluation instructions /
  reference (:func:`evaluation_instructions`). Both apply the study file's filters in a fixed
  order — deduplicate, ``max_chars`` (instruction + input), then a random ``sample`` drawn with the
  study's ``seed`` — so the plan and the notebooks see the same rows;
- the policy (:func:`generate_responses`, :func:`sample_responses` for notebook 01) and the feedback
  judges (:func:`judge`, :func:`ask` for notebooks 02 / 03), with their options from their config
  files, never from a notebook;
- counts for a stage's manifest: :func:`outcome` (n / valid / invalid / failed and why),
  :func:`outcome_table`, :func:`outcome_line`.
"""
from __future__ import annotations

import contextlib
import logging
import re
import warnings
from pathlib import Path

import pandas as pd

from .. import data as d
from .. import io as sfio
from .config import resolve_path
from .seed import canonical


def _model_outputs(path) -> pd.DataFrame:
    """AlpacaEval ``model_outputs`` (:func:`sflib.io.read_model_outputs`), its four columns only."""
    return sfio.read_model_outputs(path)[d.MODEL_OUTPUT_COLUMNS]


def _base(study) -> Path:
    return study.path.parent if study.path else Path.cwd()


def _filter(df: pd.DataFrame, max_chars: int | None, sample: int | None, seed: int, text: list[str]) -> pd.DataFrame:
    if max_chars is not None:
        length = sum(df[c].astype(str).str.len() for c in text)
        df = df[length <= max_chars]
    if sample is not None and sample < len(df):
        df = df.sample(n=sample, random_state=seed)
    return df.reset_index(drop=True)


def available_instructions(study) -> pd.DataFrame:
    """Every instruction of ``instructions.paths`` (deduplicated, ``max_chars`` applied, not sampled)."""
    cfg = study.config.instructions
    if cfg.paths:
        paths = [resolve_path(p, _base(study)) for p in cfg.paths]
        # ``split`` (default "train") picks the split of a saved dataset folder; a file has none
        frames = [sfio.read_instructions(p, split=cfg.split if Path(p).is_dir() else None) for p in paths]
        df = pd.concat(frames, ignore_index=True)
        df, _ = d.dedupe(df, ["id"])
    else:
        df = canonical("superni_instructions")
    return _filter(df, cfg.max_chars, None, study.config.seed, ["instruction", "input"])


def instructions(study) -> pd.DataFrame:
    """The study's feedback instructions: ``id, instruction, input, source``."""
    df = available_instructions(study)
    return _filter(df, None, study.config.instructions.sample, study.config.seed, ["instruction"])


def reference_outputs(study) -> pd.DataFrame:
    """The reference outputs (AlpacaEval layout) — ``best_of_n.reference`` or the vendored text-davinci-003."""
    ref = study.config.best_of_n.reference
    return _model_outputs(resolve_path(ref, _base(study))) if ref else canonical("eval_reference_outputs")


def evaluation_instructions(study) -> pd.DataFrame:
    """The best-of-n / evaluation instructions with their reference output: ``instruction, output, dataset``.

    From ``best_of_n.instructions`` (AlpacaEval layout) or the reference's own instructions; the
    ``datasets`` filter, ``max_chars`` and ``sample`` of the ``best_of_n`` section applied.
    """
    cfg = study.config.best_of_n
    ref = reference_outputs(study).drop_duplicates("instruction")
    if cfg.instructions:
        asked = _model_outputs(resolve_path(cfg.instructions, _base(study)))[["instruction", "dataset"]]
        asked = asked.drop_duplicates("instruction")
        df = asked.merge(ref[["instruction", "output"]], on="instruction", how="left")
        df["output"] = df["output"].fillna("")
    else:
        df = ref[["instruction", "output", "dataset"]]
    if cfg.datasets is not None:
        df = df[df["dataset"].isin(cfg.datasets)]
    return _filter(df, cfg.max_chars, cfg.sample, study.config.seed, ["instruction"])


# ----------------------------------------------------------------------------- the study's policy and judges

#: the options a judge or policy is run with, shown in the notebooks (from its config file or defaults)
OPTION_NAMES = ("concurrency", "rpm", "tpm", "timeout", "temperature", "max_tokens", "top_p")


def is_recorded(judge) -> bool:
    """Whether a judge (or its name) replays recorded answers instead of asking a model."""
    name = judge if isinstance(judge, str) else getattr(judge, "name", "")
    return str(name).strip().startswith("recorded")


def judge(name: str):
    """A :class:`~sflib.judges.Judge` for a judge name of the study (config name, YAML path or spec); its
    options (concurrency, rpm, tpm, timeout, temperature, max_tokens) come from its config file."""
    from ..ratings import resolve_judge

    return resolve_judge(name)


def options(j) -> dict:
    """The options a judge or policy client runs with (``name``, :data:`OPTION_NAMES`, the file they come from)."""
    cfg = getattr(j, "config", None) or {}
    params = dict(getattr(j, "params", None) or {})
    out = {"name": j.name}
    for key in OPTION_NAMES:
        value = cfg.get(key, params.get(key, getattr(j, key, None)))
        out[key] = "none" if value is None else value
    source = cfg.get("source")
    out["from"] = "defaults" if source in (None, "shorthand") else Path(str(source)).name
    return out


def generate_responses(study, instructions: pd.DataFrame, *, k: int | None = None,
                       max_new_tokens: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Sample ``k`` responses per instruction with the study's policy (``policy`` section).

    Sampling settings (temperature, top_p, max_new_tokens, prompt_style) come from the study file;
    a server policy's request limits (concurrency, rpm, tpm, timeout) from its policy config.
    ``k`` / ``max_new_tokens`` override the study's (the notebooks' quick mode). Raises
    ``RuntimeError`` when requests to a server failed (they are retried by the next run).
    """
    cfg = study.config.policy
    k = int(k or cfg.k)
    tokens = int(max_new_tokens or cfg.max_new_tokens)
    if is_recorded(cfg.name):
        raise ValueError(f"study {study.name}: policy {cfg.name!r} writes no responses; list 'responses' in "
                         "seeded_from_data or name a policy such as local:smollm2 or openai:<model>")
    from ..policies import get_policy

    policy = get_policy(cfg.name, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=tokens,
                        template=cfg.prompt_style)
    return policy.generate(instructions, k=k, seed=study.config.seed, progress=progress)


#: notebook 01's quick mode: at most this many instructions, samples and new tokens
QUICK = {"instructions": 8, "k": 4, "max_new_tokens": 32}
#: the bundled policy of notebook 01's demonstration (the paper study's responses are seeded)
DEMO_POLICY = "local:smollm2"


def _sampled(responses: pd.DataFrame, instr: pd.DataFrame, k: int, failure: str | None, quick: bool) -> dict:
    """Counts for the responses manifest: ``n``, ``valid`` (non-empty), ``invalid`` (empty), ``failed``."""
    text = responses["response"].fillna("").astype(str) if len(responses) else pd.Series(dtype=str)
    empty = int((text.str.strip() == "").sum())
    cut = int((responses.get("finish_reason", pd.Series(dtype=object)) == "length").sum())
    counts = {"n": int(len(responses)), "instructions": int(len(instr)), "k": int(k), "valid": int(len(responses)) - empty,
              "invalid": empty, "failed": 0, "cut_at_max_new_tokens": cut, "quick": bool(quick), "reasons": {}}
    if empty:
        counts["reasons"]["empty response (kept)"] = empty
    if failure:
        counts["failed"] = int(len(instr)) * int(k)
        counts["reasons"][failure] = counts["failed"]
    return counts


def _quiet_transformers() -> None:
    """No "Loading weights" progress widget in the notebooks."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


@contextlib.contextmanager
def _quiet_sampling():
    """No "Loading weights" widget, no empty-responses warning (the counts say it) while sampling."""
    _quiet_transformers()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*responses are empty.*")
        yield


def sample_responses(study, quick: bool = False, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Notebook 01 for a study whose responses are not seeded: ``(responses, instructions, counts)``.

    The study's instructions, ``k`` samples each from its policy (quick: :data:`QUICK` limits).
    A server policy whose requests failed gives an empty table and the reason in ``counts``
    (the answers that did arrive are in the annotation store, so a re-run only asks the rest).
    Empty responses are kept and counted (``invalid``), not warned about.
    """
    cfg = study.config.policy
    instr = instructions(study)
    k, tokens = cfg.k, cfg.max_new_tokens
    if quick:
        instr = instr.head(QUICK["instructions"])
        k, tokens = min(k, QUICK["k"]), min(tokens, QUICK["max_new_tokens"])
    failure = None
    with _quiet_sampling(), _quiet_retry_warning():  # the counts say it, once
        try:
            responses = generate_responses(study, instr, k=k, max_new_tokens=tokens, progress=progress)
        except RuntimeError as e:  # requests to a server that failed after retries
            text = str(e)
            common = re.findall(r"'([^']{1,120})':", text.split("errors: ", 1)[-1]) if "errors: " in text else []
            failure = text.split(";")[0] + (f" ({common[0]})" if common else "")
            responses = pd.DataFrame(columns=EMPTY["responses"])
    return responses, instr, _sampled(responses, instr, k, failure, quick)


def demo_responses(study, n: int, k: int = 3, max_new_tokens: int = 48, max_chars: int = 400,
                   progress: bool = False) -> pd.DataFrame:
    """A demonstration of sampling with the bundled SmolLM2 (:data:`DEMO_POLICY`) on ``n`` of the
    study's instructions (at most ``max_chars`` long). Nothing is saved to the study."""
    from .. import generate as g

    cfg = study.config.policy
    pool = available_instructions(study)
    pool = _filter(pool, max_chars, None, study.config.seed, ["instruction", "input"])
    pool = _filter(pool, None, n, study.config.seed, ["instruction"])
    with _quiet_sampling():
        return g.generate_local(pool, model=DEMO_POLICY.partition(":")[2], k=k, temperature=cfg.temperature,
                                top_p=cfg.top_p, max_new_tokens=max_new_tokens, seed=study.config.seed,
                                progress=progress)


#: the columns of an empty table of notebooks 01-03 (an empty table is written as an empty file)
EMPTY = {"responses": d.RESPONSE_COLUMNS + ["sample", "n_tokens", "finish_reason", "source"],
         "ratings": d.RATING_COLUMNS + ["judge", "valid", "status", "raw", "error"],
         "rankings": d.RANKING_COLUMNS + ["verdict_12", "verdict_21", "valid", "status", "error", "judge"]}


def read(study, stage: str) -> pd.DataFrame:
    """``study.read(stage)`` (missing / stale stages raise as there), except that a stage saved with no
    rows reads as an empty table with the usual columns instead of an "empty file" error."""
    study.check(stage)
    path = study.stage_dir(stage) / f"{stage}.jsonl"
    if stage in EMPTY and path.exists() and path.stat().st_size < 8 and not path.read_text(encoding="utf-8").strip():
        return pd.DataFrame(columns=EMPTY[stage])
    return study.read(stage)


def responses_summary(responses: pd.DataFrame, width: int = 60) -> pd.DataFrame:
    """Per instruction: samples, empty ones, how many stopped on their own / were cut, lengths in words."""
    if responses.empty:
        return pd.DataFrame(columns=["instruction", "samples", "empty", "stopped", "cut", "mean_words"])
    words = responses["response"].fillna("").astype(str).str.split().str.len()
    finish = responses["finish_reason"] if "finish_reason" in responses else pd.Series(None, index=responses.index)
    out = responses.assign(words=words, empty=responses["response"].fillna("").str.strip() == "",
                           stopped=finish == "stop", cut=finish == "length").groupby("instruction_id", sort=False).agg(
        instruction=("instruction", "first"), samples=("response", "size"), empty=("empty", "sum"),
        stopped=("stopped", "sum"), cut=("cut", "sum"), mean_words=("words", "mean"),
        min_words=("words", "min"), max_words=("words", "max"))
    if finish.isna().all():  # e.g. the paper's released responses: how they ended is not known
        out = out.drop(columns=["stopped", "cut"])
    out["instruction"] = out["instruction"].str.slice(0, width)
    out["mean_words"] = out["mean_words"].round(1)
    return out.reset_index(drop=True)


# ----------------------------------------------------------------------------- asking the feedback judge

@contextlib.contextmanager
def _quiet_retry_warning():
    """Drop the engine's "N requests failed ... the next run retries them" (wrong for recorded answers)."""
    log = logging.getLogger("sflib.annotate")

    def keep(record: logging.LogRecord) -> bool:
        return "requests failed" not in record.getMessage()

    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


def ask(study, kind: str, table: pd.DataFrame, j, *, progress: bool | None = None) -> pd.DataFrame:
    """Rate (``kind="ratings"``: responses) or rank (``"rankings"``: pairs) with judge ``j``, the study's templates,
    ``both_orders`` and annotation store. A recorded judge is replayed without the store: an item it has no
    answer for is ``failed``, "not recorded" in the counts, and not announced as a failure to retry."""
    from ..rankings import rank
    from ..ratings import rate

    recorded = is_recorded(j)
    store = False if recorded else study.store_path
    progress = (not recorded) if progress is None else progress
    fb = study.config.feedback
    with _quiet_retry_warning() if recorded else contextlib.nullcontext():
        if kind == "ratings":
            return rate(table, j, store=store, template=fb.rating_template, progress=progress)
        if kind == "rankings":
            return rank(table, j, store=store, template=fb.ranking_template, both_orders=fb.both_orders,
                        progress=progress)
    raise ValueError(f"kind must be 'ratings' or 'rankings', not {kind!r}")


# ----------------------------------------------------------------------------- counts for the manifest

_HEX = re.compile(r"\b[0-9a-f]{12,}\b")
NOT_RECORDED = "not recorded (the paper's run has no answer for it)"


def reason(status: str, error: object) -> str:
    """A short, groupable reason for a row without a valid answer."""
    if status == "invalid":
        text = str(error or "")
        return "reply could not be parsed" if not text or "could not be parsed" in text else text[:100]
    text = str(error or "no answer")
    if "no recorded" in text:
        return NOT_RECORDED
    text = re.sub(r"^order \d\d: ", "", text.split("; order ")[0])
    return _HEX.sub("…", text)[:100]


def outcome(df: pd.DataFrame) -> dict:
    """Counts for a stage's manifest: ``n``, ``valid``, ``invalid``, ``failed`` and ``reasons`` (reason -> rows).

    A table without ``valid`` / ``status`` columns (seeded feedback) counts every row as valid; a
    judge's output adds what it asked and paid (:func:`spending`).
    """
    n = len(df)
    if n == 0:
        return {"n": 0, "valid": 0, "invalid": 0, "failed": 0, "reasons": {}}
    valid = df["valid"].astype(bool) if "valid" in df else pd.Series(True, index=df.index)
    status = df["status"].astype(str) if "status" in df else pd.Series("ok", index=df.index)
    status = status.where(~valid, "ok").where(valid | (status != "ok"), "invalid")
    errors = df["error"] if "error" in df else pd.Series(None, index=df.index)
    reasons = pd.Series([reason(s, e) for s, e in zip(status[~valid], errors[~valid])], dtype=object)
    counts = {"n": int(n), "valid": int(valid.sum()), "invalid": int((status == "invalid").sum()),
              "failed": int((status == "failed").sum()),
              "reasons": {str(r): int(c) for r, c in reasons.value_counts().items()}}
    return {**counts, **spending(df.attrs["stats"])} if df.attrs.get("stats") else counts


def outcome_table(counts: dict) -> pd.DataFrame:
    """The counts as a small table: one row per outcome (valid, then each reason), with its share."""
    n = max(counts["n"], 1)
    rows = [{"outcome": "valid", "reason": "", "items": counts["valid"]}]
    for why, c in counts.get("reasons", {}).items():
        rows.append({"outcome": "not recorded" if why.startswith("not recorded") else
                     ("invalid" if why == "reply could not be parsed" else "failed"), "reason": why, "items": c})
    out = pd.DataFrame(rows)
    out["share"] = (out["items"] / n).map("{:.0%}".format)
    return out


def outcome_line(counts: dict, what: str) -> str:
    """One line: ``"98 ratings: 97 valid, 0 invalid, 1 failed (not recorded ...: 1)"``."""
    n = counts.get("n", 0)
    line = (f"{n} {what}: {counts.get('valid', n)} valid, {counts.get('invalid', 0)} invalid, "
            f"{counts.get('failed', 0)} failed")
    if counts.get("reasons"):
        line += " (" + "; ".join(f"{r}: {c}" for r, c in counts["reasons"].items()) + ")"
    return line


def spending(stats: dict) -> dict:
    """What a judge run asked and paid (from ``df.attrs["stats"]``): requests, cached, asked, tokens, cost."""
    cost = stats.get("cost_usd")
    return {"requests": int(stats.get("requests", 0)), "cached": int(stats.get("cached", 0)),
            "asked": int(stats.get("called", 0)), "prompt_tokens": int(stats.get("prompt_tokens", 0)),
            "completion_tokens": int(stats.get("completion_tokens", 0)),
            "cost_usd": None if cost is None or cost != cost else round(float(cost), 6)}


def too_little(counts: dict, what: str, stage: str) -> str | None:
    """One line when a feedback stage has no valid answer (later stages then say they cannot compute), else None."""
    if counts.get("valid", 0) > 0:
        return None
    if counts.get("n", 0) == 0:
        return f"{stage}: nothing to judge: the responses stage is empty; saved an empty {what} table"
    return (f"{stage}: none of the {counts['n']} {what} is valid ({outcome_line(counts, what).split(': ', 1)[1]}); "
            f"saved with this reason, later stages will report that they have too little to work with")


def check_judged(responses: pd.DataFrame, table: pd.DataFrame, kind: str) -> tuple[str, dict]:
    """What a feedback table covers of notebook 01's responses: ``(one line, counts)``; raises if it judged
    anything else.

    ``kind="ratings"``: the rated responses must be 01's responses; ``"rankings"``: each pair must be
    two of 01's responses to the same instruction. The counts are over 01's responses (ratings) or
    all their pairs (rankings): ``valid`` = with a valid answer, the rest ``failed`` — for recorded
    (seeded) feedback, :data:`NOT_RECORDED`.
    """
    ids = set(responses["response_id"]) if len(responses) else set()
    valid = table["valid"].astype(bool) if "valid" in table and len(table) else pd.Series(True, index=table.index)
    if kind == "ratings":
        foreign = set(table["response_id"]) - ids if len(table) else set()
        if foreign:
            raise ValueError(f"the ratings judge {len(foreign)} response(s) that are not notebook 01's")
        items, got, what, extra = ids, set(table.loc[valid, "response_id"]), "responses", 0
    else:
        from ..rankings import make_pairs

        owner = dict(zip(responses["response_id"], responses["instruction_id"])) if len(responses) else {}
        bad = [(a, b) for a, b, i in zip(table["response_id_1"], table["response_id_2"], table["instruction_id"])
               if owner.get(a) != i or owner.get(b) != i] if len(table) else []
        if bad:
            raise ValueError(f"{len(bad)} ranked pair(s) are not two of notebook 01's responses to one instruction")
        pairs = make_pairs(responses) if len(responses) else pd.DataFrame(columns=["response_id_1", "response_id_2"])
        items = {frozenset(p) for p in zip(pairs["response_id_1"], pairs["response_id_2"])}
        got = {frozenset(p) for p in zip(table.loc[valid, "response_id_1"], table.loc[valid, "response_id_2"])}
        what, extra = "pairs of notebook 01's responses", len(got - items)
    covered, missing = len(items & got), len(items - got)
    counts = {"n": len(items), "valid": covered, "invalid": 0, "failed": missing,
              "reasons": {NOT_RECORDED: missing} if missing else {}}
    line = (f"{covered} of the {len(items)} {what} have a valid {'rating' if kind == 'ratings' else 'decision'}"
            + (f"; {missing} {'has' if missing == 1 else 'have'} none" if missing else "")
            + (f"; {extra} more pair a response with an identical copy of itself" if extra else ""))
    return line, counts


# ----------------------------------------------------------------------------- notebooks 04-07: what the valid inputs allow

import os  # noqa: E402  (kept with the functions below, which were added at the end of this module)
from dataclasses import dataclass, field  # noqa: E402


@dataclass
class Attempt:
    """The outcome of one library call made by :func:`attempt`."""
    value: object = None
    reason: str | None = None                      # why there is no value (one line); None when the call worked
    notes: list[str] = field(default_factory=list)  # the library's warnings, one line each

    @property
    def ok(self) -> bool:
        return self.reason is None


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def attempt(fn, *args, **kwargs) -> Attempt:
    """Call ``fn(*args, **kwargs)``; the library's "too little or bad input" errors (``ValueError``:
    ``DataError``, ``RewardModelError`` ...) become a one-line ``reason`` instead of a traceback, and
    its warnings (``UserWarning``) become ``notes``, so a notebook can go on with what it has."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            value, reason = fn(*args, **kwargs), None
        except ValueError as e:
            value, reason = None, _one_line(e)
    notes = list(dict.fromkeys(_one_line(w.message) for w in caught if issubclass(w.category, UserWarning)))
    return Attempt(value, reason, notes)


def stage_counts(study, stages) -> pd.DataFrame:
    """One row per stage from its manifest: state, judge / policy, n / valid / invalid / failed and why."""
    rows = []
    for stage in stages:
        m = study.manifest(stage) or {}
        c = m.get("counts") or {}
        reasons = c.get("reasons") or {}
        why = "; ".join(f"{k} ({v})" for k, v in reasons.items()) if isinstance(reasons, dict) else str(reasons)
        rows.append({"stage": stage, "state": study.state(stage), "judge / policy": m.get("judge") or m.get("policy") or "",
                     **{k: c.get(k) for k in ("n", "valid", "invalid", "failed")},
                     "why": why or c.get("reason") or ""})
    return pd.DataFrame(rows).set_index("stage")


def best_of_n_policy(study) -> str:
    """The policy that samples the best-of-n candidates: ``best_of_n.policy``, else the feedback policy."""
    return study.config.best_of_n.policy or study.config.policy.name


def best_of_n_samples(study, instructions: pd.DataFrame, *, policy: str | None = None, n: int | None = None,
                      max_new_tokens: int | None = None, progress: bool = False) -> pd.DataFrame:
    """``n`` samples per evaluation instruction from the study's best-of-n policy (``local:`` or ``openai:``).

    ``instructions``: :func:`evaluation_instructions` (or a subset). The sampling settings are the
    ``best_of_n`` section's; ``policy`` / ``n`` / ``max_new_tokens`` override them (quick mode, a demonstration).
    """
    from .. import generate
    from .config import _resolve

    cfg = study.config.best_of_n
    n = n or cfg.n
    max_new_tokens = max_new_tokens or cfg.max_new_tokens
    name = policy or best_of_n_policy(study)
    spec = _resolve("policy", name)
    asked = instructions.rename(columns={"dataset": "source"})[["instruction", "source"]].assign(input="")
    if spec["provider"] == "local":
        return generate.generate_local(asked, model=spec["model"], k=n, temperature=cfg.temperature, top_p=cfg.top_p,
                                       max_new_tokens=max_new_tokens, seed=study.config.seed,
                                       prompt_style=study.config.policy.prompt_style, progress=progress)
    if spec["provider"] == "openai":
        from ..judges.openai_judge import OpenAIJudge

        base_url = spec.get("base_url") or (os.environ.get(spec["base_url_env"]) if spec.get("base_url_env") else None)
        options = {k: spec[k] for k in ("concurrency", "rpm", "tpm", "timeout") if spec.get(k) is not None}
        policy = OpenAIJudge(spec["model"], base_url=base_url, temperature=cfg.temperature, max_tokens=max_new_tokens,
                             top_p=cfg.top_p, **options)
        return generate.generate_openai(asked, policy, k=n, prompt_style=study.config.policy.prompt_style,
                                        seed=study.config.seed, progress=progress)
    raise ValueError(f"best_of_n.policy {name!r}: cannot sample from a {spec['provider']!r} policy; use local:<model> "
                     "or openai:<model>, or list best_of_n in seeded_from_data")


def _plain(obj):
    """``obj`` with NaN / inf as None and numpy / pandas scalars as Python ones (strict JSON)."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def save_stage(study, stage: str, *, json_files: dict | None = None, files=(), **kwargs):
    """:meth:`Study.save` with JSON documents (``{"report.json": obj}``) written to temporary files first."""
    import json
    import tempfile

    study.folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".save-", dir=study.folder) as tmp:
        paths = list(files)
        for name, obj in (json_files or {}).items():
            path = Path(tmp) / name
            path.write_text(json.dumps(_plain(obj), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            paths.append(path)
        if kwargs.get("counts") is not None:
            kwargs["counts"] = _plain(kwargs["counts"])
        return study.save(stage, files=paths, **kwargs)


def _short(text: object, width: int) -> str:
    text = " ".join(str(text if text is not None else "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _texts(ratings: pd.DataFrame, rankings: pd.DataFrame) -> dict:
    """``response_id`` -> response text, from the ratings and the rankings tables."""
    texts = {}
    if {"response_id", "response"} <= set(ratings.columns):
        texts.update(zip(ratings["response_id"], ratings["response"]))
    for i in ("1", "2"):
        if {f"response_id_{i}", f"response{i}"} <= set(rankings.columns):
            texts.update(zip(rankings[f"response_id_{i}"], rankings[f"response{i}"]))
    return texts


def response_words(ratings: pd.DataFrame, rankings: pd.DataFrame) -> dict:
    """``response_id`` -> length in words (for :func:`sflib.plots.plot_disagreement_vs_length`)."""
    return {rid: len(str(t).split()) for rid, t in _texts(ratings, rankings).items()}


def opposite_preferences(pairs: pd.DataFrame, ratings: pd.DataFrame, rankings: pd.DataFrame, n: int = 3,
                         width: int = 400) -> pd.DataFrame:
    """Up to ``n`` compared pairs where the ratings prefer one response and the rankings the other:
    the instruction, both responses (shortened to ``width`` characters), both scores and both decisions.
    One column per pair (largest rating gap first)."""
    if not len(pairs):
        return pd.DataFrame()
    opp = pairs[pairs["ratings_decision"].isin(["a", "b"]) & pairs["rankings_decision"].isin(["a", "b"])
                & (pairs["ratings_decision"] != pairs["rankings_decision"])]
    opp = opp.sort_values(["gap", "row"], ascending=[False, True], kind="stable").head(n)
    texts = _texts(ratings, rankings)
    instr = {}
    for df in (ratings, rankings):
        if {"instruction_id", "instruction"} <= set(df.columns):
            instr.update(zip(df["instruction_id"], df["instruction"]))
    cols = {}
    for k, r in enumerate(opp.itertuples(), 1):
        cols[f"pair {k}"] = {
            "instruction": _short(instr.get(r.instruction_id, ""), width),
            "response (a)": _short(texts.get(r.response_id_1, ""), width),
            "response (b)": _short(texts.get(r.response_id_2, ""), width),
            "rating of (a)": int(r.score1), "rating of (b)": int(r.score2),
            "ratings prefer": f"({r.ratings_decision})", "rankings prefer": f"({r.rankings_decision})"}
    return pd.DataFrame(cols)


def rated_differently(ratings: pd.DataFrame, width: int = 300) -> pd.DataFrame:
    """Responses rated more than once with different scores: the response (shortened) and its scores in order."""
    if not len(ratings) or "score" not in ratings or "response_id" not in ratings:
        return pd.DataFrame(columns=["instruction", "response", "scores"])
    ok = ratings[ratings["score"].notna()]
    keys = ["instruction_id", "response_id"] if "instruction_id" in ok else ["response_id"]
    groups = ok.groupby(keys, sort=False)
    rows = []
    for _, g in groups:
        if g["score"].nunique() > 1:
            rows.append({"instruction": _short(g["instruction"].iloc[0], 120) if "instruction" in g else "",
                         "response": _short(g["response"].iloc[0], width) if "response" in g else "",
                         "scores": ", ".join(str(int(v)) for v in g["score"])})
    return pd.DataFrame(rows, columns=["instruction", "response", "scores"])


def ci_verdict(value: float, low: float, high: float, paper: float, what: str) -> str:
    """One sentence: whether this run's 95% interval for ``what`` includes the paper's ``paper`` value."""
    where = "includes" if low <= paper <= high else ("is below" if high < paper else "is above")
    return f"{what}: {value:.1f}% (95% CI {low:.1f}–{high:.1f}%); the interval {where} the paper's {paper:g}%"


def at_chance(accuracy: float, n: int, chance: float = 0.5) -> bool:
    """Whether a pairwise accuracy on ``n`` pairs is within the 95% Wilson interval of chance."""
    if not n:
        return True
    from ..plots.feedback import wilson

    low, high = wilson(round(accuracy * n), n)
    return low <= chance <= high


def attempt_quietly(fn, *args, **kwargs) -> Attempt:
    """:func:`attempt` with what ``fn`` prints to stdout swallowed (the Trainer's raw log dicts; the losses
    stay in the result's ``log_history``) and no Hugging Face progress widgets."""
    import io

    _quiet_transformers()
    with contextlib.redirect_stdout(io.StringIO()):
        return attempt(fn, *args, **kwargs)


def paper_vs_run(study, results, comparison: pd.DataFrame, min_n: int = 10) -> pd.DataFrame:
    """Notebook 07's closing table: the paper's statements (abstract) beside this study's numbers, with n.

    Rows: notebook 04's disagreement (when the study has it), each win rate (``results``: WinRates;
    fewer than ``min_n`` instructions: no number), and the head-to-head per protocol (``comparison``:
    :func:`sflib.evaluation.compare_policies`). The paper's win rates are not transcribed in
    :mod:`sflib.paper`, so only its qualitative finding is quoted.
    """
    import json

    from .. import paper
    from .folder import StudyError

    source = f"{paper.ARXIV}, Abstract"
    rows = []
    try:
        rep = json.loads(study.path_of("consistency", "report.json").read_text(encoding="utf-8"))
    except (StudyError, ValueError):
        rep = {}
    if rep.get("n_compared"):
        lo, hi = rep["ci95"]["consistency"]
        stated = paper.table("consistency").set_index("quantity")["paper_value"]
        rows.append({"quantity": "ratings and rankings disagree (%, notebook 04)",
                     "paper": f"{stated.get('disagreement, AI annotators (%)', float('nan')):g} (human and AI annotators)",
                     "this run": f"{100 * (1 - rep['consistency']):.1f} (95% CI {100 * (1 - hi):.1f}–{100 * (1 - lo):.1f})",
                     "n": rep["n_compared"], "source": source})
    for r in results:
        rows.append({"quantity": f"win rate of {r.policy} vs {r.reference}, {r.protocol} protocol (%)",
                     "paper": "not transcribed in sflib/paper.py",
                     "this run": (f"{r.winrate:.1f} ± {r.ci_sem:.1f} (length-controlled {r.lc_winrate:.1f})"
                                  if r.n >= min_n else f"n = {r.n}: too few for a number"), "n": r.n, "source": ""})
    for proto in ("rating", "ranking"):
        got = comparison[comparison["protocol"] == proto] if len(comparison) else comparison
        if len(got):
            g = got.iloc[0]
            ours = (f"{g['policy_a']} − {g['policy_b']} = {g['diff']:+.1f} ± {g['ci_sem']:.1f}" if g["n"] >= min_n
                    else f"not measurable: the two policies share {int(g['n'])} judged instructions")
        else:
            ours = "not measurable: fewer than two policies"
        rows.append({"quantity": f"rankings-RM vs ratings-RM, {proto} protocol",
                     "paper": "rankings-RM preferred" if proto == "ranking" else "rankings-RM not preferred",
                     "this run": ours, "n": int(got.iloc[0]["n"]) if len(got) else 0,
                     "source": f"{source} (qualitative)"})
    return pd.DataFrame(rows).set_index("quantity")


def rm_verdict(held_out: pd.DataFrame, chance: float = 0.5) -> str:
    """One sentence on the held-out pairwise accuracy of the reward models (``sflib.reward_model.evaluate``):
    which are at chance (within the 95% Wilson interval of ``chance``), on how many pairs, and whether that is
    a demonstration (fewer than 100 pairs)."""
    if not len(held_out) or not held_out["n_pairs"].max():
        return "**No held-out ranked pairs**: the reward models cannot be compared with chance."
    rows = list(held_out.iterrows())
    low = [name for name, r in rows if at_chance(r["pairwise_accuracy"], int(r["n_pairs"]), chance)]
    n = int(held_out["n_pairs"].max())
    if len(low) == len(rows):
        head = f"{'Both reward models are' if len(rows) == 2 else 'The reward model is'} at chance on {n} held-out pairs"
    elif low:
        head = f"{', '.join(low)} at chance on {n} held-out pairs; the other above"
    else:
        head = f"every reward model ranks the {n} held-out pairs better than chance"
    return f"**{head}** (95% intervals)." + (" A demonstration of the pipeline at this scale, not a result." if n < 100 else "")


def reward_models_record(ratings: pd.DataFrame, rankings: pd.DataFrame, runs: dict, notes: dict, settings: dict,
                         held_out_instructions: int, held_out: pd.DataFrame) -> tuple[dict, dict]:
    """Notebook 05's manifest counts and ``metrics.json``: rows read / usable / without a valid answer,
    ties left out, which RMs were trained and why the others were not."""
    no_score = int(ratings["score"].isna().sum()) if "score" in ratings else len(ratings)
    no_decision = int(rankings["decision"].isna().sum()) if "decision" in rankings else len(rankings)
    ties = int((rankings["decision"] == "equal").sum()) if "decision" in rankings else 0
    trained = sorted(k for k, run in runs.items() if run is not None)
    reasons = {"ratings: no valid score": no_score, "rankings: no decision": no_decision, "rankings: tie, left out": ties}
    reasons = {k: v for k, v in reasons.items() if v}
    reasons.update({f"{kind} RM not trained: {why}": 1 for kind, why in notes.items() if runs[kind] is None})
    counts = {"n": len(ratings) + len(rankings),
              "valid": len(ratings) - no_score + len(rankings) - no_decision - ties,
              "invalid": no_score + no_decision, "failed": len(runs) - len(trained), "reasons": reasons,
              "trained": trained}
    if not trained:
        counts["reason"] = "no reward model could be trained: " + "; ".join(notes.values())
    metrics = {"settings": {k: v for k, v in settings.items() if k != "progress"},
               "held_out_instructions": held_out_instructions,
               "trained": {k: {"counts": runs[k].counts, "steps": runs[k].trainer.state.global_step} for k in trained},
               "not_trained": {k: notes[k] for k in runs if runs[k] is None},
               "held_out": held_out.reset_index().to_dict("records") if len(held_out) else []}
    return counts, metrics


def evaluation_record(evaluations: dict, recorded: bool) -> tuple[pd.DataFrame, dict]:
    """Notebook 07's ``judgments`` table (every judged item, with policy and protocol) and manifest counts:
    instructions counted / invalid / failed per protocol and why, and what the judge cost. For a recorded
    judge, an instruction without a recording is "not recorded", never "failed"."""
    results = [r for e in evaluations.values() for r in e.results.values()]
    judgments = (pd.concat([r.items.assign(policy=r.policy, protocol=r.protocol) for r in results], ignore_index=True)
                 if results else pd.DataFrame())
    reasons: dict = {}
    for r in results:
        for why, k in r.dropped.items():
            why = why.replace("judgment failed", "judgment not recorded") if recorded else why
            reasons[f"{r.protocol}: {why}"] = reasons.get(f"{r.protocol}: {why}", 0) + k
    n, valid = sum(r.n_items for r in results), sum(r.n for r in results)
    failed = 0 if recorded else sum(k for why, k in reasons.items() if "failed" in why)
    cost = sum(float(st.get("cost_usd") or 0) for e in evaluations.values() for st in e.stats.values())
    counts = {"n": n, "valid": valid, "invalid": n - valid - failed, "failed": failed, "reasons": reasons,
              "cost_usd": round(cost, 6)}
    if not valid:
        counts["reason"] = "no policy outputs to evaluate" if not results else "no judgment could be counted"
    return judgments, counts
