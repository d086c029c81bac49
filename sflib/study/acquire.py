"""What notebooks 01–03 call: the policy (:func:`generate_responses`, :func:`sample_responses`) and the
feedback judges (:func:`judge`, :func:`ask`), with their options from their config files, never from a
notebook; counts for a stage's manifest: :func:`outcome` (n / valid / invalid / failed and why),
:func:`outcome_table`, :func:`outcome_line`."""
from __future__ import annotations

import contextlib
import logging
import re
import warnings
from pathlib import Path

import pandas as pd

from ..core import data as d
from .inputs import _filter, available_instructions, instructions
from .seed import NOT_RECORDED

OPTION_NAMES = ("concurrency", "rpm", "tpm", "timeout", "temperature", "max_tokens", "top_p")


def is_recorded(judge) -> bool:
    """Whether a judge (or its name) replays recorded answers instead of asking a model."""
    name = judge if isinstance(judge, str) else getattr(judge, "name", "")
    return str(name).strip().startswith("recorded")


def judge(name: str):
    """A :class:`~sflib.judges.Judge` for a judge name of the study (config name, YAML path or spec); its
    options (concurrency, rpm, tpm, timeout, temperature, max_tokens) come from its config file."""
    from ..feedback.ratings import resolve_judge

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
    from ..generation.policies import get_policy

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


def quiet_transformers() -> None:
    """Turn off the Hugging Face ``transformers`` progress bars (the "Loading weights" widget) for the rest
    of the process, so an executed notebook shows no widget."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


@contextlib.contextmanager
def _quiet_sampling():
    """No "Loading weights" widget, no empty-responses warning (the counts say it) while sampling."""
    quiet_transformers()
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
    with _quiet_sampling(), quiet_retry_warning():  # the counts say it, once
        try:
            responses = generate_responses(study, instr, k=k, max_new_tokens=tokens, progress=progress)
        except RuntimeError as e:  # requests to a server that failed after retries
            text = str(e)
            common = re.findall(r"'([^']{1,120})':", text.split("errors: ", 1)[-1]) if "errors: " in text else []
            failure = text.split(";")[0] + (f" ({common[0]})" if common else "")
            responses = pd.DataFrame(columns=EMPTY["responses"])
    counts = _sampled(responses, instr, k, failure, quick)
    if _is_local_policy(cfg.name):
        from ..core.threads import available_cores

        counts["torch_threads"] = available_cores()  # what sampling_local.load_policy set
    return responses, instr, counts


def _is_local_policy(name: str) -> bool:
    from ..generation.policies import get_policy

    try:
        return get_policy(name).provider == "local"
    except Exception:  # noqa: BLE001 - an unknown policy failed above already; say nothing here
        return False


def demo_responses(study, n: int, k: int = 3, max_new_tokens: int = 48, max_chars: int = 400,
                   progress: bool = False) -> pd.DataFrame:
    """A demonstration of sampling with the bundled SmolLM2 (:data:`DEMO_POLICY`) on ``n`` of the
    study's instructions (at most ``max_chars`` long). Nothing is saved to the study."""
    from ..generation.sampling_local import generate_local

    cfg = study.config.policy
    pool = available_instructions(study)
    pool = _filter(pool, max_chars, None, study.config.seed, ["instruction", "input"])
    pool = _filter(pool, None, n, study.config.seed, ["instruction"])
    with _quiet_sampling():
        return generate_local(pool, model=DEMO_POLICY.partition(":")[2], k=k, temperature=cfg.temperature,
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
def quiet_retry_warning():
    """A context in which the engine's "N requests failed ... the next run retries them" log line is dropped:
    for a recorded judge, which has nothing to retry (its missing answers are counted as not recorded)."""
    log = logging.getLogger("sflib.feedback.annotate")

    def keep(record: logging.LogRecord) -> bool:
        return "requests failed" not in record.getMessage()

    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


@contextlib.contextmanager
def _logprob_notes():
    """Print the engine's "N replies came without usable logprobs" as one plain line (a note for the
    reader of the notebook, not a warning on stderr)."""
    log = logging.getLogger("sflib.feedback.annotate")
    seen: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        if "without usable logprobs" in record.getMessage():
            seen.append(record.getMessage())
            return False
        return True

    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)
        for message in seen:
            print("note:", message, "(soft verdicts need a provider that returns logprobs)")


def ask(study, kind: str, table: pd.DataFrame, j, *, progress: bool | None = None) -> pd.DataFrame:
    """Rate (``kind="ratings"``: responses) or rank (``"rankings"``: pairs) with judge ``j``, the study's templates,
    ``both_orders`` and annotation store. A recorded judge is replayed without the store: an item it has no
    answer for is ``failed``, "not recorded" in the counts, and not announced as a failure to retry."""
    from ..feedback.rankings import rank
    from ..feedback.ratings import rate

    recorded = is_recorded(j)
    store = False if recorded else study.store_path
    progress = (not recorded) if progress is None else progress
    fb = study.config.feedback
    with quiet_retry_warning() if recorded else _logprob_notes():
        if kind == "ratings":
            return rate(table, j, store=store, template=fb.rating_template, progress=progress,
                        mode="online" if recorded else fb.mode)
        if kind == "rankings":
            return rank(table, j, store=store, template=fb.ranking_template, both_orders=fb.both_orders,
                        progress=progress, mode="online" if recorded else fb.mode)
    raise ValueError(f"kind must be 'ratings' or 'rankings', not {kind!r}")


# ----------------------------------------------------------------------------- counts for the manifest

_HEX = re.compile(r"\b[0-9a-f]{12,}\b")


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
        from ..feedback.rankings import make_pairs

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
