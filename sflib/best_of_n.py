"""Stage 7 — best-of-n: score n sampled responses per instruction with a reward model, keep the best.

The pieces, each usable alone:

- :func:`load_reward_model` / :func:`check_prompt_format` — a reward model whose recorded prompt
  format (``reward_model.json``) is not :data:`sflib.prompts.PROMPT_FORMAT` is refused before its
  weights are loaded: it would score text formatted differently from what it was trained on.
- :func:`score_samples` — add a ``reward`` column to a responses table (``sflib.reward_model.score``).
- :func:`check_samples` — exactly ``n`` samples per instruction (the first ``n`` by ``sample``); an
  instruction with fewer is an error, or a warning with counts when ``allow_fewer=True``; empty
  responses are counted in a warning (they stay candidates: the reward model judges them).
- :func:`select_best` — the argmax per instruction (ties: the earliest sample).
- :func:`best_of_m_selections` / :func:`best_of_m_curve` — best-of-m for m = 1, 2, 4, ..., n from
  the *same* n scored samples, no rescoring. Each instruction's samples are put in one fixed
  random order (seeded by ``hash(seed, instruction_id)``) and best-of-m picks from its first m, so
  the subsets are nested (the best-of-4 candidates include the best-of-2 ones) and do not depend
  on which other instructions are in the run. The curve reports the reward of these selections
  and the exact expectation over all m-subsets (order statistics), which has no sampling noise.
- :func:`agreement` — how often two reward models pick the same sample, for each m.
- :func:`length_by_m` — length of the selected outputs vs all samples (length bias).
- :func:`to_model_outputs` / :func:`write_model_outputs` — AlpacaEval's ``model_outputs`` layout
  (``instruction, output, generator, dataset``), which ``sflib.evaluation`` and AlpacaEval read.

Command line::

    python -m sflib best-of-n --responses samples.jsonl --rm ratings_rm=outputs/reward_models/ratings \\
        --rm rankings_rm=outputs/reward_models/rankings --n 64 --out-dir outputs/best_of_n
"""
from __future__ import annotations

import argparse
import json
import math
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from . import data as sfdata
from .data import DataError, make_id
from .prompts import PROMPT_FORMAT

REWARD = "reward"


# ----------------------------------------------------------------------------- reward models

def check_prompt_format(rm) -> dict:
    """The metadata of a reward model (a loaded one or its folder), after checking its prompt format.

    Raises ``RewardModelError`` (a ``ValueError``) when the folder has no ``reward_model.json``,
    when it records no prompt format, or when the format differs from :data:`PROMPT_FORMAT`.
    """
    from .reward_model import META_NAME, RewardModelError

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
    """A :class:`~sflib.reward_model.RewardModel` from a folder (prompt format checked first) or passed through."""
    from .reward_model import RewardModel, RewardModelError

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
    outputs file (default: the vendored ``davinci003.json``), keeping ``datasets`` (None: all)."""
    from .paths import data_dir

    path = Path(path) if path is not None else data_dir() / "original" / "inference_model_outputs" / "davinci003.json"
    outputs = sfdata.read_model_outputs(path)
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
    from . import reward_model as R
    from .paths import data_dir, outputs_dir

    folder = Path(folder) if folder is not None else outputs_dir() / "reward_models"
    stand_in_dir = Path(stand_in_dir) if stand_in_dir is not None else outputs_dir() / "best_of_n" / "stand_in_reward_models"
    original = data_dir() / "original" / "alpaca_generation"
    feedback = {"ratings": original / "feedback_ratings_sample_generation.csv",
                "rankings": original / "feedback_rankings_sample_generation.csv"}
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
                result = R.train_reward_model(kind, R.read_feedback(feedback[kind], kind), path, backbone=backbone,
                                              max_steps=max_steps, max_length=128, save_checkpoints=False,
                                              progress=False, logging_steps=max(1, max_steps // 4))
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
    from .reward_model import score

    rm = load_reward_model(rm)
    for col in ("instruction", "response"):
        if col not in responses:
            raise DataError(None, f"responses table has no '{col}' column", field=col)
    out = responses.copy()
    inputs = out["input"].tolist() if "input" in out else None
    out[column] = score(rm, out["instruction"].tolist(), out["response"].fillna("").astype(str).tolist(),
                        batch_size=batch_size, inputs=inputs, progress=progress)
    return out


# ----------------------------------------------------------------------------- samples

def _with_ids(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``instruction_id`` (from the text) and ``sample`` (order within the instruction) when missing."""
    df = df.copy()
    if "instruction_id" not in df:
        inputs = df["input"] if "input" in df else [""] * len(df)
        df["instruction_id"] = [make_id(i, x) for i, x in zip(df["instruction"], inputs)]
    if "sample" not in df:
        df["sample"] = df.groupby("instruction_id", sort=False).cumcount()
    return df


def check_samples(responses: pd.DataFrame, n: int | None = None, *, allow_fewer: bool = False,
                  reward: str | None = REWARD) -> pd.DataFrame:
    """The first ``n`` samples (by ``sample``) of every instruction, in instruction order.

    ``n=None``: the largest number of samples any instruction has. An instruction with fewer than
    ``n`` samples raises a ``ValueError`` with counts, or with ``allow_fewer=True`` is kept with the
    samples it has and reported in a warning. Extra samples beyond ``n`` are set aside (counted in a
    warning). A missing reward (NaN) raises; empty responses are counted in a warning and kept.
    """
    if not len(responses):
        raise ValueError("no responses: nothing to select from")
    df = _with_ids(responses)
    if df.duplicated(["instruction_id", "sample"]).any():
        dup = int(df.duplicated(["instruction_id", "sample"]).sum())
        raise DataError(None, f"{dup} rows repeat an (instruction_id, sample) pair; each sample must appear once",
                        field="sample")
    if reward is not None:
        if reward not in df:
            raise DataError(None, f"responses table has no '{reward}' column; score it first with score_samples()",
                            field=reward)
        missing = df[reward].isna()
        if missing.any():
            raise ValueError(f"{int(missing.sum())} of {len(df)} responses have no {reward} (NaN); score them again")
    order = {iid: i for i, iid in enumerate(dict.fromkeys(df["instruction_id"]))}
    df = df.assign(_order=df["instruction_id"].map(order)).sort_values(["_order", "sample"], kind="stable")
    counts = df.groupby("instruction_id", sort=False).size()
    n = int(counts.max()) if n is None else int(n)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    short = counts[counts < n]
    if len(short):
        message = (f"{len(short)} of {len(counts)} instructions have fewer than n={n} samples (as few as "
                   f"{int(short.min())}; e.g. instruction_id {', '.join(short.index[:3])})")
        if not allow_fewer:
            raise ValueError(message + ". Generate the missing samples (k >= n), lower n, or pass allow_fewer=True "
                                       "to select among the samples they have")
        warnings.warn(message + "; they select among the samples they have", stacklevel=3)
    extra = int((counts - n).clip(lower=0).sum())
    if extra:
        warnings.warn(f"{extra} samples beyond the first n={n} of their instruction are not used", stacklevel=3)
    df = df[df.groupby("instruction_id", sort=False).cumcount() < n].drop(columns="_order")
    empty = df["response"].fillna("").astype(str).str.strip() == ""
    if empty.any():
        warnings.warn(f"{int(empty.sum())} of {len(df)} samples are empty responses (in "
                      f"{df.loc[empty, 'instruction_id'].nunique()} of {len(counts)} instructions); they remain "
                      f"candidates and are scored like any other response", stacklevel=3)
    df.attrs["n"] = n
    return df.reset_index(drop=True)


def select_best(responses_with_rewards: pd.DataFrame, n: int | None = None, *, reward: str = REWARD,
                allow_fewer: bool = False) -> pd.DataFrame:
    """One row per instruction: the sample with the highest reward among its first ``n`` samples.

    Ties go to the earliest sample. Adds ``n_samples`` (candidates considered). Reports how many
    selected responses are empty.
    """
    df = check_samples(responses_with_rewards, n, allow_fewer=allow_fewer, reward=reward)
    best = df.groupby("instruction_id", sort=False)[reward].idxmax()  # first occurrence: earliest sample
    out = df.loc[best.values].copy()
    out["n_samples"] = df.groupby("instruction_id", sort=False).size().loc[out["instruction_id"]].values
    _warn_empty_selected(out)
    return out.reset_index(drop=True)


def _warn_empty_selected(selected: pd.DataFrame) -> None:
    empty = selected["response"].fillna("").astype(str).str.strip() == ""
    if empty.any():
        warnings.warn(f"{int(empty.sum())} of {len(selected)} selected responses are empty (the reward model "
                      f"preferred an empty response); they are kept", stacklevel=3)


# ----------------------------------------------------------------------------- best-of-m

def default_ms(n: int) -> list[int]:
    """1, 2, 4, ... up to ``n`` (``n`` itself included even when it is not a power of two)."""
    ms, m = [], 1
    while m < n:
        ms.append(m)
        m *= 2
    return ms + [n]


def subset_order(instruction_id: str, n: int, seed: int = 0) -> np.ndarray:
    """The fixed random order of an instruction's ``n`` samples; best-of-m uses its first m."""
    from .generate import instruction_seed

    return np.random.default_rng(instruction_seed(seed, f"best-of-m:{instruction_id}")).permutation(n)


def expected_best_of_m(rewards: Sequence[float], m: int) -> float:
    """The exact mean, over all m-subsets of the samples, of the subset's highest reward.

    With the rewards sorted ascending ``r_1 <= ... <= r_n``, the highest of a uniformly random
    m-subset is ``r_i`` with probability ``C(i-1, m-1) / C(n, m)``.
    """
    r = np.sort(np.asarray(rewards, dtype=float))
    n = len(r)
    if not 1 <= m <= n:
        raise ValueError(f"m must be between 1 and the number of samples ({n}), got {m}")
    weights = np.array([math.comb(i - 1, m - 1) for i in range(1, n + 1)], dtype=float) / math.comb(n, m)
    return float(weights @ r)


def _rewards_dict(rewards_by_instruction, reward: str = REWARD) -> dict[str, np.ndarray]:
    """``{instruction_id: rewards in sample order}`` from a frame, a mapping or a 2-D array."""
    if isinstance(rewards_by_instruction, pd.DataFrame):
        df = _with_ids(rewards_by_instruction).sort_values("sample", kind="stable")
        return {iid: g[reward].to_numpy(float) for iid, g in df.groupby("instruction_id", sort=False)}
    if isinstance(rewards_by_instruction, Mapping):
        return {str(k): np.asarray(v, dtype=float) for k, v in rewards_by_instruction.items()}
    arr = np.asarray(rewards_by_instruction, dtype=float)
    if arr.ndim != 2:
        raise ValueError("rewards must be a frame, a mapping instruction_id -> rewards, or a 2-D array "
                         "(instructions x samples)")
    return {str(i): row for i, row in enumerate(arr)}


def _pick(rewards: np.ndarray, order: np.ndarray, m: int) -> int:
    """The sample picked by best-of-m: the highest reward among ``order[:m]``, ties to the earliest sample."""
    candidates = np.sort(order[:m])
    return int(candidates[np.argmax(rewards[candidates])])


def best_of_m_selections(responses_with_rewards: pd.DataFrame, ms: Sequence[int] | None = None, *,
                         seed: int = 0, reward: str = REWARD, n: int | None = None,
                         allow_fewer: bool = False) -> pd.DataFrame:
    """The response best-of-m selects for every instruction and every m, from the same scored samples.

    Returns the selected rows (all columns of the input) with ``m`` and ``n_candidates`` added,
    ordered by m then instruction. ``ms`` defaults to 1, 2, 4, ..., n.
    """
    df = check_samples(responses_with_rewards, n, allow_fewer=allow_fewer, reward=reward)
    n = df.attrs["n"]
    ms = list(ms) if ms is not None else default_ms(n)
    bad = [m for m in ms if not 1 <= m <= n]
    if bad:
        raise ValueError(f"every m must be between 1 and n={n}; got {bad}")
    parts = []
    for iid, group in df.groupby("instruction_id", sort=False):
        rewards = group[reward].to_numpy(float)
        order = subset_order(iid, len(group), seed)
        for m in ms:
            k = min(m, len(group))
            row = group.iloc[[_pick(rewards, order, k)]].copy()
            row["m"], row["n_candidates"] = m, k
            parts.append(row)
    out = pd.concat(parts, ignore_index=True)
    order = {iid: i for i, iid in enumerate(dict.fromkeys(df["instruction_id"]))}
    out = out.assign(_o=out["instruction_id"].map(order)).sort_values(["m", "_o"], kind="stable").drop(columns="_o")
    return out.reset_index(drop=True)


def best_of_m_curve(rewards_by_instruction, ms: Sequence[int] | None = None, seed: int = 0, *,
                    reward: str = REWARD) -> pd.DataFrame:
    """Reward of best-of-m for each m, from one set of scored samples (no rescoring).

    ``rewards_by_instruction``: a scored responses frame (``instruction_id``, ``sample``,
    ``reward``), a mapping ``instruction_id -> rewards`` in sample order, or a 2-D array
    (instructions x samples). Columns: ``m``; ``selected`` (mean reward of the fixed-seed
    selections, as :func:`best_of_m_selections` makes them) with ``selected_sem``; ``expected``
    (mean over instructions of the exact expectation over all m-subsets); ``n_instructions``.
    Instructions with fewer than m samples are left out of that m's row (``n_instructions`` says
    how many count); use :func:`check_samples` first to insist on n samples each.
    """
    rewards = _rewards_dict(rewards_by_instruction, reward)
    if not rewards:
        raise ValueError("no rewards given")
    for iid, r in rewards.items():
        if len(r) == 0 or np.isnan(r).any():
            raise ValueError(f"instruction {iid}: {'no rewards' if len(r) == 0 else 'a reward is NaN'}")
    n = max(len(r) for r in rewards.values())
    ms = list(ms) if ms is not None else default_ms(n)
    orders = {iid: subset_order(iid, len(r), seed) for iid, r in rewards.items()}
    rows = []
    for m in ms:
        selected, expected = [], []
        for iid, r in rewards.items():
            if len(r) < m:
                continue
            selected.append(r[_pick(r, orders[iid], m)])
            expected.append(expected_best_of_m(r, m))
        k = len(selected)
        sem = float(np.std(selected, ddof=1) / math.sqrt(k)) if k > 1 else float("nan")
        rows.append({"m": m, "selected": float(np.mean(selected)) if k else float("nan"), "selected_sem": sem,
                     "expected": float(np.mean(expected)) if k else float("nan"), "n_instructions": k})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- comparisons

def agreement(selections_a: pd.DataFrame, selections_b: pd.DataFrame) -> pd.DataFrame:
    """For each m, the share of instructions where two reward models select the same sample.

    Inputs are :func:`best_of_m_selections` frames (or :func:`select_best` frames: one m). Columns:
    ``m``, ``same_sample`` (share), ``same_text`` (share selecting identical text, which can differ
    when two samples are identical), ``chance`` (1/m: two independent uniform picks among m
    distinct candidates), ``n_instructions``.
    """
    a = selections_a.assign(m=selections_a["m"] if "m" in selections_a else selections_a["n_samples"])
    b = selections_b.assign(m=selections_b["m"] if "m" in selections_b else selections_b["n_samples"])
    both = a.merge(b, on=["m", "instruction_id"], suffixes=("_a", "_b"))
    if not len(both):
        raise ValueError("the two selections share no (m, instruction_id)")
    both["same_sample"] = both["sample_a"] == both["sample_b"]
    both["same_text"] = both["response_a"] == both["response_b"]
    out = both.groupby("m").agg(same_sample=("same_sample", "mean"), same_text=("same_text", "mean"),
                                n_instructions=("instruction_id", "size")).reset_index()
    out["chance"] = 1.0 / out["m"]
    return out[["m", "same_sample", "same_text", "chance", "n_instructions"]]


def words(text: object) -> int:
    """Length of a response in whitespace-separated words."""
    return len(str(text or "").split())


def length_by_m(samples: pd.DataFrame, selections: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Mean length (words) of the outputs each reward model selects, per m, next to all samples.

    ``samples``: the scored samples the selections were made from; ``selections``: ``{name:
    best_of_m_selections frame}``. Columns: ``selector`` (a reward model's name, or "all samples"),
    ``m``, ``mean_words``, ``sem_words``, ``n``. The "all samples" rows repeat the mean length of
    every sample at each m (what best-of-m would give with no length preference).
    """
    rows = []
    all_len = samples["response"].map(words)
    ms = sorted(set().union(*[set(s["m"]) for s in selections.values()])) if selections else []
    for m in ms:
        rows.append({"selector": "all samples", "m": m, "mean_words": float(all_len.mean()),
                     "sem_words": float(all_len.std(ddof=1) / math.sqrt(len(all_len))), "n": len(all_len)})
    for name, sel in selections.items():
        for m, group in sel.groupby("m"):
            length = group["response"].map(words)
            rows.append({"selector": name, "m": int(m), "mean_words": float(length.mean()),
                         "sem_words": float(length.std(ddof=1) / math.sqrt(len(length))) if len(length) > 1
                         else float("nan"), "n": len(length)})
    return pd.DataFrame(rows)


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


def write_model_outputs(selected: pd.DataFrame, path: os.PathLike | str, generator: str,
                        dataset: str = "source") -> Path:
    """Write selected responses as an AlpacaEval ``model_outputs`` JSON file."""
    return sfdata.write_model_outputs(to_model_outputs(selected, generator, dataset), path)


# ----------------------------------------------------------------------------- CLI

def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "best-of-n", help="rerank n samples per instruction with reward model(s); write AlpacaEval outputs",
        description="Score every sample with each reward model, keep the best of n per instruction, write it "
                    "in AlpacaEval's model_outputs layout, and write the best-of-m curve (m = 1, 2, 4, ..., n) "
                    "computed from the same samples.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--responses", required=True,
                   help="sampled responses: a canonical table (.jsonl/.parquet) or the generation JSON layout")
    p.add_argument("--rm", action="append", required=True, metavar="NAME=FOLDER",
                   help="a reward model folder, optionally named (repeatable), e.g. ratings_rm=outputs/reward_models/ratings")
    p.add_argument("--n", type=int, help="samples per instruction to select from (default: all)")
    p.add_argument("--allow-fewer", action="store_true",
                   help="let instructions with fewer than n samples select among those they have (warns)")
    p.add_argument("--out-dir", default=None, help="folder for <name>_outputs.json etc. (default: outputs/best_of_n)")
    p.add_argument("--generator", default=None, help="generator name in the outputs (default: <policy>_best_of_<n>_<name>)")
    p.add_argument("--seed", type=int, default=0, help="seed of the best-of-m subsets")
    p.add_argument("--batch-size", type=int, default=32, help="reward-model scoring batch size")
    p.set_defaults(func=_cli)


def read_samples(path: os.PathLike | str) -> pd.DataFrame:
    """Responses from a canonical table or from the original generation JSON layout."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return sfdata.read_generations(path)
    return sfdata.read_table(path, required=["instruction", "response"])


def _cli(args) -> int:
    from .paths import outputs_dir

    samples = read_samples(args.responses)
    out_dir = Path(args.out_dir) if args.out_dir else outputs_dir() / "best_of_n"
    policy = str(samples["generator"].iloc[0]) if "generator" in samples and len(samples) else "policy"
    for spec in args.rm:
        name, sep, folder = spec.partition("=")
        if not sep:
            name, folder = Path(spec).name, spec
        rm = load_reward_model(folder)
        scored = score_samples(samples, rm, batch_size=args.batch_size)
        best = select_best(scored, args.n, allow_fewer=args.allow_fewer)
        n = int(best["n_samples"].max())
        generator = args.generator or f"{policy}_best_of_{n}_{name}"
        path = write_model_outputs(best, out_dir / f"{name}_outputs.json", generator)
        sfdata.write_table(scored, out_dir / f"{name}_scored.jsonl")
        curve = best_of_m_curve(check_samples(scored, args.n, allow_fewer=args.allow_fewer), seed=args.seed)
        sfdata.write_table(curve, out_dir / f"{name}_best_of_m.jsonl")
        print(f"{name}: best of {n} for {len(best)} instructions -> {path}")
        print(curve.to_string(index=False))
    return 0
