"""What notebooks 04–07 call that is study-level glue: library calls that report instead of raising
(:func:`attempt`), stage records and counts for the manifests, best-of-n sampling from the study's
policy, honest verdicts at demo scale and the closing "paper vs this run" table.

Helpers of one library concern live in that concern's module and are re-exported here (and so reach
the notebooks as ``inputs.<name>`` too): the disagreement examples (:func:`opposite_preferences`,
:func:`rated_differently`, :func:`response_words`) in :mod:`sflib.consistency.report`;
:func:`at_chance` in :mod:`sflib.core.stats`."""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..consistency.report import opposite_preferences, rated_differently, response_words  # noqa: F401
from ..core.stats import at_chance
from .acquire import quiet_transformers


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
    from ..generation import generate
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


def ci_verdict(value: float, low: float, high: float, paper: float, what: str) -> str:
    """One sentence: whether this run's 95% interval for ``what`` includes the paper's ``paper`` value."""
    where = "includes" if low <= paper <= high else ("is below" if high < paper else "is above")
    return f"{what}: {value:.1f}% (95% CI {low:.1f}–{high:.1f}%); the interval {where} the paper's {paper:g}%"


def attempt_quietly(fn, *args, **kwargs) -> Attempt:
    """:func:`attempt` with what ``fn`` prints to stdout swallowed (the Trainer's raw log dicts; the losses
    stay in the result's ``log_history``) and no Hugging Face progress widgets."""
    import io

    quiet_transformers()
    with contextlib.redirect_stdout(io.StringIO()):
        return attempt(fn, *args, **kwargs)


def paper_vs_run(study, results, comparison: pd.DataFrame, min_n: int = 10) -> pd.DataFrame:
    """Notebook 07's closing table: the paper's statements (abstract) beside this study's numbers, with n.

    Rows: notebook 04's disagreement (when the study has it), each win rate (``results``: WinRates;
    fewer than ``min_n`` instructions: no number), and the head-to-head per protocol (``comparison``:
    :func:`sflib.evaluation.compare_policies`). The paper's win rates are not transcribed in
    :mod:`sflib.core.paper`, so only its qualitative finding is quoted.
    """
    import json

    from ..core import paper
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
                     "paper": "not transcribed in sflib/core/paper.py",
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
    """One sentence on the held-out pairwise accuracy of the reward models (``sflib.rm.evaluate``):
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
