"""The study's inputs as tables: the feedback instructions (:func:`instructions`) and the evaluation
instructions / reference (:func:`evaluation_instructions`). Both apply the study file's filters in a
fixed order — deduplicate, ``max_chars`` (instruction + input), then a random ``sample`` drawn with
the study's ``seed`` — so the plan and the notebooks see the same rows.

The notebooks' other helpers live in :mod:`sflib.study.acquire` (policy and judge calls, outcome
counts: notebooks 01–03) and :mod:`sflib.study.findings` (stage records, examples and verdicts:
notebooks 04–07).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from ..core import data as d
from .. import io as sfio
from .config import StudyConfigError, resolve_path
from .seed import canonical


def _model_outputs(path) -> pd.DataFrame:
    """AlpacaEval ``model_outputs`` (:func:`sflib.io.read_model_outputs`), its four columns only."""
    return sfio.read_model_outputs(path)[d.MODEL_OUTPUT_COLUMNS]


def _base(study) -> Path:
    return study.path.parent if study.path else Path.cwd()


def stable_sample(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """``n`` rows picked by a seeded hash of each row's ``id`` (else its ``instruction``), in the file's order.

    Unlike ``df.sample`` the pick does not depend on the row order, and adding a row to the file changes
    the sample by at most that one row: an edited instruction file keeps the work already done."""
    if n is None or n >= len(df):
        return df
    keys = df["id"] if "id" in df else df["instruction"]
    rank = [hashlib.sha256(f"{seed}\x00{k}".encode("utf-8")).hexdigest() for k in keys.astype(str)]
    return df.iloc[sorted(sorted(range(len(rank)), key=rank.__getitem__)[:n])]


def _filter(df: pd.DataFrame, max_chars: int | None, sample: int | None, seed: int, text: list[str]) -> pd.DataFrame:
    if max_chars is not None:
        length = sum(df[c].astype(str).str.len() for c in text)
        df = df[length <= max_chars]
    return stable_sample(df.reset_index(drop=True), sample, seed).reset_index(drop=True)


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
        known = set(ref["instruction"])
        lacking = [(row + 1, t) for row, t in zip(asked.index, asked["instruction"]) if t not in known]
        if lacking:  # nothing to judge it against: refused before 06 samples for it (07 would ignore it)
            row, text = lacking[0]
            raise StudyConfigError(
                f"{cfg.instructions}: row {row}, field instruction: {text[:60]!r} has no "
                f"reference output in {cfg.reference or 'the vendored text-davinci-003 outputs'}"
                f" ({len(lacking)} instruction(s) lack one): add them to best_of_n.reference or remove them")
        df = asked.merge(ref[["instruction", "output"]], on="instruction", how="left")
        df["output"] = df["output"].fillna("")
    else:
        df = ref[["instruction", "output", "dataset"]]
    if cfg.datasets is not None:
        df = df[df["dataset"].isin(cfg.datasets)]
    return _filter(df, cfg.max_chars, cfg.sample, study.config.seed, ["instruction"])
