"""Stage 06 — best-of-n: score n sampled responses per instruction with a reward model, keep the best.

The pieces, each usable alone (the selection and best-of-m analysis live in :mod:`sflib.bon`
and are re-exported here):

- :func:`load_reward_model` / :func:`check_prompt_format` — a reward model whose recorded prompt
  format (``reward_model.json``) is not :data:`sflib.core.prompts.PROMPT_FORMAT` is refused before its
  weights are loaded: it would score text formatted differently from what it was trained on.
- :func:`score_samples` — add a ``reward`` column to a responses table (``sflib.rm.score``).
- :func:`check_samples` — exactly ``n`` samples per instruction (the first ``n`` by ``sample``); an
  instruction with fewer is an error, or a warning with counts when ``allow_fewer=True``; empty
  responses are counted in a warning (they stay candidates: the reward model judges them).
- :func:`select_best` — the argmax per instruction (ties: the earliest sample).
- :func:`best_of_m_selections` / :func:`best_of_m_curve`, :func:`agreement`, :func:`length_by_m` —
  best-of-m from the same n scored samples (nested, seeded subsets; no rescoring), agreement of
  two reward models and length bias: see :mod:`sflib.bon.curves`.
- :func:`to_model_outputs` — AlpacaEval's ``model_outputs`` layout (``instruction, output, generator,
  dataset``), which ``sflib.evaluation`` and AlpacaEval read; written by the one
  :func:`sflib.core.data.write_model_outputs`.

Command line::

    python -m sflib best-of-n --responses samples.jsonl --rm ratings_rm=outputs/reward_models/ratings \\
        --rm rankings_rm=outputs/reward_models/rankings --n 64 --out-dir outputs/best_of_n
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..core import data as sfdata
from .. import io as sfio
from ..core.data import DataError
from .curves import (agreement, best_of_m_curve, best_of_m_selections, default_ms, expected_best_of_m,
                     length_by_m, subset_order, words)
from .select import REWARD, check_samples, select_best
from ..core.prompts import PROMPT_FORMAT


# ----------------------------------------------------------------------------- reward models

def check_prompt_format(rm) -> dict:
    """The metadata of a reward model (a loaded one or its folder), after checking its prompt format.

    Raises ``RewardModelError`` (a ``ValueError``) when the folder has no ``reward_model.json``,
    when it records no prompt format, or when the format differs from :data:`PROMPT_FORMAT`.
    """
    from ..rm import META_NAME, RewardModelError

    if hasattr(rm, "meta"):
        meta, where = dict(rm.meta), "this reward model"
    else:
        path = Path(rm) / META_NAME
        if not path.exists():
            raise RewardModelError(f"{rm} is not a reward model folder: it has no {META_NAME}; train one with "
                                   f"notebook 05 or `python -m sflib train-rm`")
        meta, where = json.loads(path.read_text(encoding="utf-8")), str(rm)
    fmt = meta.get("prompt_format")
    if fmt != PROMPT_FORMAT:
        raise RewardModelError(f"{where} was trained on prompts in format {fmt!r}, but best-of-n scores prompts in "
                               f"format {PROMPT_FORMAT!r}: its rewards would not mean what they meant in training. "
                               f"Retrain it with this sflib (notebook 05 or `python -m sflib train-rm`).")
    return meta


def load_reward_model(rm, kind: str | None = None):
    """A :class:`~sflib.rm.RewardModel` from a folder (prompt format checked first) or passed through."""
    from ..rm import RewardModel, RewardModelError

    check_prompt_format(rm)
    if isinstance(rm, RewardModel) or hasattr(rm, "meta"):
        if kind is not None and rm.meta.get("kind") != kind:
            raise RewardModelError(f"this is a {rm.meta.get('kind')} reward model, not a {kind} one")
        return rm
    return RewardModel.load(rm, kind=kind)


RM_NAMES = {"ratings": "ratings_rm", "rankings": "rankings_rm"}
#: the AlpacaEval subsets the paper evaluated on (553 instructions)
PAPER_DATASETS = ("helpful_base", "koala", "oasst", "vicuna")


def evaluation_instructions(path: os.PathLike | str | None = None,
                            datasets: Sequence[str] | None = PAPER_DATASETS) -> pd.DataFrame:
    """The unseen evaluation instructions (``id, instruction, input, source``) from an AlpacaEval
    outputs file (default: the vendored ``davinci003.json``, catalog role ``eval.reference_outputs``),
    keeping ``datasets`` (None: all)."""
    from ..core import catalog

    path = Path(path) if path is not None else catalog.path("eval.reference_outputs", original=True)
    outputs = sfio.read_model_outputs(path)
    if datasets is not None:
        unknown = set(datasets) - set(outputs["dataset"])
        if unknown:
            raise DataError(path, f"no instructions from dataset(s) {sorted(unknown)} (it has: "
                                  f"{', '.join(sorted(set(outputs['dataset'])))})", field="dataset")
        outputs = outputs[outputs["dataset"].isin(datasets)]
    records = [{"instruction": i, "input": "", "source": s} for i, s in zip(outputs["instruction"], outputs["dataset"])]
    df = sfdata.instructions_frame(records)
    if len(df) < len(records):
        warnings.warn(f"{path}: {len(records) - len(df)} repeated instructions counted once", stacklevel=2)
    return df


def reward_models(folder: os.PathLike | str | None = None, *, train_missing: bool = False,
                  stand_in_dir: os.PathLike | str | None = None, max_steps: int = 10,
                  backbone: str = "minilm") -> tuple[dict, pd.DataFrame]:
    """The ratings RM and the rankings RM as ``{"ratings_rm": rm, "rankings_rm": rm}``, and a table
    saying where each came from.

    They are loaded from ``<folder>/{ratings,rankings}`` (default ``outputs/reward_models``, where
    notebook 05 and ``python -m sflib train-rm`` save them). A missing one raises
    ``FileNotFoundError`` naming what to run, unless ``train_missing=True``: then a small stand-in
    is trained on the vendored sample feedback (``max_steps`` optimizer steps) into
    ``stand_in_dir`` (default ``outputs/best_of_n/stand_in_reward_models``; reused when already
    there), never into ``folder``, and the table says so.
    """
    from ..core import catalog
    from .. import rm as R
    from ..core.paths import outputs_dir

    folder = Path(folder) if folder is not None else outputs_dir() / "reward_models"
    stand_in_dir = Path(stand_in_dir) if stand_in_dir is not None else outputs_dir() / "best_of_n" / "stand_in_reward_models"
    feedback = {kind: f"feedback.{kind}" for kind in RM_NAMES}  # catalog roles of the vendored sample feedback
    rms, rows = {}, []
    for kind, name in RM_NAMES.items():
        path = folder / kind
        if (path / R.META_NAME).exists():
            rms[name] = load_reward_model(path, kind=kind)
            source = "trained by notebook 05 / train-rm"
        elif train_missing:
            path = stand_in_dir / kind
            if (path / R.META_NAME).exists():
                rms[name] = load_reward_model(path, kind=kind)
                steps = rms[name].meta.get("config", {}).get("max_steps")
                source = f"STAND-IN trained earlier ({steps} steps on the vendored sample; no RM in {folder / kind})"
            else:
                sample = R.read_feedback(catalog.path(feedback[kind], original=True), kind)
                result = R.train_reward_model(kind, sample, path, backbone=backbone, max_steps=max_steps, max_length=128,
                                              save_checkpoints=False, progress=False,
                                              logging_steps=max(1, max_steps // 4))
                rms[name] = result.rm
                source = f"STAND-IN: {max_steps} steps on the vendored sample (no RM in {folder / kind})"
        else:
            raise FileNotFoundError(f"no {kind} reward model in {path}: run notebook 05 first, or "
                                    f"`python -m sflib train-rm --kind {kind} --output {path}`")
        meta = rms[name].meta
        rows.append({"reward model": name, "kind": meta.get("kind"), "backbone": meta.get("backbone"),
                     "prompt format": meta.get("prompt_format"), "source": source, "folder": str(path)})
    return rms, pd.DataFrame(rows).set_index("reward model")


def score_samples(responses: pd.DataFrame, rm, *, batch_size: int = 32, column: str = REWARD,
                  progress: bool | None = None) -> pd.DataFrame:
    """A copy of ``responses`` with the reward model's score of each response in ``column``."""
    from ..rm import score

    rm = load_reward_model(rm)
    for col in ("instruction", "response"):
        if col not in responses:
            raise DataError(None, f"responses table has no '{col}' column", field=col)
    out = responses.copy()
    inputs = out["input"].tolist() if "input" in out else None
    out[column] = score(rm, out["instruction"].tolist(), out["response"].fillna("").astype(str).tolist(),
                        batch_size=batch_size, inputs=inputs, progress=progress)
    return out


# ----------------------------------------------------------------------------- AlpacaEval outputs

def to_model_outputs(selected: pd.DataFrame, generator: str, dataset: str = "source") -> pd.DataFrame:
    """AlpacaEval's ``model_outputs`` layout from selected responses: ``instruction, output, generator, dataset``.

    ``dataset`` names the column holding each instruction's dataset (empty when absent).
    AlpacaEval has no ``input`` field: a non-empty input is appended to the instruction after a
    blank line, with a warning that counts them.
    """
    if "m" in selected and selected["m"].nunique() > 1:
        raise ValueError("selections for several m given; pass the rows of one m (e.g. sel[sel.m == 64])")
    inputs = selected["input"].fillna("").astype(str) if "input" in selected else pd.Series([""] * len(selected))
    has_input = (inputs.str.strip() != "").to_numpy()
    if has_input.any():
        warnings.warn(f"{int(has_input.sum())} of {len(selected)} instructions have an input; AlpacaEval's layout "
                      f"has no input field, so it is appended to the instruction", stacklevel=2)
    instructions = [f"{i}\n\n{x}" if h else i for i, x, h in zip(selected["instruction"], inputs, has_input)]
    return pd.DataFrame({
        "instruction": instructions,
        "output": selected["response"].fillna("").astype(str).tolist(),
        "generator": generator,
        "dataset": selected[dataset].fillna("").astype(str).tolist() if dataset in selected else "",
    })


def read_samples(path: os.PathLike | str, *, split: str | None = None) -> pd.DataFrame:
    """Sampled responses, one row per response (:func:`sflib.io.read_responses`): a canonical table,
    the generation JSON layout (``responses: [...]`` per instruction), AlpacaEval outputs, a CSV."""
    return sfio.read_responses(path, split=split)
