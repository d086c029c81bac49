"""The study's inputs as tables: the feedback instructions and the evaluation instructions / reference.

Both apply the study file's filters in a fixed order — deduplicate, ``max_chars`` (instruction +
input), then a random ``sample`` drawn with the study's ``seed`` — so the plan and the notebooks
see the same rows.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import data as d
from .config import resolve_path
from .seed import canonical


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
        frames = [d.read_instructions(resolve_path(p, _base(study)), split=cfg.split) for p in cfg.paths]
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
    return d.read_model_outputs(resolve_path(ref, _base(study))) if ref else canonical("eval_reference_outputs")


def evaluation_instructions(study) -> pd.DataFrame:
    """The best-of-n / evaluation instructions with their reference output: ``instruction, output, dataset``.

    From ``best_of_n.instructions`` (AlpacaEval layout) or the reference's own instructions; the
    ``datasets`` filter, ``max_chars`` and ``sample`` of the ``best_of_n`` section applied.
    """
    cfg = study.config.best_of_n
    ref = reference_outputs(study).drop_duplicates("instruction")
    if cfg.instructions:
        asked = d.read_model_outputs(resolve_path(cfg.instructions, _base(study)))[["instruction", "dataset"]]
        asked = asked.drop_duplicates("instruction")
        df = asked.merge(ref[["instruction", "output"]], on="instruction", how="left")
        df["output"] = df["output"].fillna("")
    else:
        df = ref[["instruction", "output", "dataset"]]
    if cfg.datasets is not None:
        df = df[df["dataset"].isin(cfg.datasets)]
    return _filter(df, cfg.max_chars, cfg.sample, study.config.seed, ["instruction"])


# ----------------------------------------------------------------------------- notebooks 04-07: what the valid inputs allow

import os  # noqa: E402  (kept with the functions below, which were added at the end of this module)
import warnings  # noqa: E402
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


def judged_counts(df: pd.DataFrame, column: str) -> dict:
    """``n / valid / invalid / failed`` and the reasons for a judged table (``column``: ``score`` or ``decision``).

    Uses the ``valid`` / ``status`` / ``error`` columns that ``rate`` / ``rank`` write; a table without
    them (recorded feedback) counts a row as valid when ``column`` has a value.
    """
    n = len(df)
    if n == 0:
        return {"n": 0, "valid": 0, "invalid": 0, "failed": 0, "reasons": {}}
    has = df[column].notna() if column in df else pd.Series(False, index=df.index)
    valid = has & (df["valid"].fillna(False).astype(bool) if "valid" in df else True)
    status = df["status"].fillna("").astype(str) if "status" in df else pd.Series("", index=df.index)
    failed = ~valid & (status == "failed")
    why = df["error"] if "error" in df else pd.Series(None, index=df.index)
    why = why.where(why.notna() & (why.astype(str).str.strip() != ""), status.where(status != "", "no " + column))
    reasons = why[~valid].map(lambda t: _one_line(t, 80)).value_counts().head(5)
    return {"n": n, "valid": int(valid.sum()), "invalid": int((~valid & ~failed).sum()), "failed": int(failed.sum()),
            "reasons": {str(k): int(v) for k, v in reasons.items()}}


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
