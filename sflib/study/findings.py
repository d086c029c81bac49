"""What notebooks 04–07 call that is study-level glue: library calls that report instead of raising
(:func:`attempt`), stage counts from the manifests, best-of-n sampling from the study's policy and
:func:`save_stage`. (Stage 05–07 records, verdicts and the "paper vs this run" rows live in
:mod:`sflib.rm.stage` / :mod:`sflib.rm.findings`, :mod:`sflib.evaluation.stage` / :mod:`sflib.evaluation.findings`.)

Helpers of one library concern live in that concern's module (import them from there): the disagreement
examples (``opposite_preferences``, ``rated_differently``, ``response_words``) in :mod:`sflib.consistency.report`;
``at_chance`` in :mod:`sflib.core.stats`."""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

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
    from ..generation import sampling_local, sampling_openai
    from .config import _resolve

    cfg = study.config.best_of_n
    n = n or cfg.n
    max_new_tokens = max_new_tokens or cfg.max_new_tokens
    name = policy or best_of_n_policy(study)
    spec = _resolve("policy", name)
    asked = instructions.rename(columns={"dataset": "source"})[["instruction", "source"]].assign(input="")
    if spec["provider"] == "local":
        return sampling_local.generate_local(asked, model=spec["model"], k=n, temperature=cfg.temperature, top_p=cfg.top_p,
                                       max_new_tokens=max_new_tokens, seed=study.config.seed,
                                       prompt_style=study.config.policy.prompt_style, progress=progress)
    if spec["provider"] == "openai":
        from ..judges.openai_judge import OpenAIJudge

        base_url = spec.get("base_url") or (os.environ.get(spec["base_url_env"]) if spec.get("base_url_env") else None)
        options = {k: spec[k] for k in ("concurrency", "rpm", "tpm", "timeout") if spec.get(k) is not None}
        policy = OpenAIJudge(spec["model"], base_url=base_url, temperature=cfg.temperature, max_tokens=max_new_tokens,
                             top_p=cfg.top_p, **options)
        return sampling_openai.generate_openai(asked, policy, k=n, prompt_style=study.config.policy.prompt_style,
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
