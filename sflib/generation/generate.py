"""Stage 01 — sample k responses per instruction from a policy.

This module holds what both samplers share (instruction ids and per-sample seeds, prompts,
:func:`pick_instructions`, :func:`write_responses`); the ``generate`` command is in
:mod:`sflib.generation.cli`, the samplers in
:mod:`sflib.generation.sampling_local` and :mod:`sflib.generation.sampling_openai` (import them from there).

Two policies, one output layout (``sflib.core.data``'s canonical responses plus ``sample``,
``n_tokens`` and ``finish_reason``):

- :func:`~sflib.generation.sampling_local.generate_local` — a local ``transformers`` causal LM (the bundled
  SmolLM2-135M-Instruct by default, or any Hugging Face causal-LM folder / cached id). Batched, left-padded sampling with
  temperature / top-p / max-new-tokens and the model's chat template or the Alpaca prompt.
- :func:`~sflib.generation.sampling_openai.generate_openai` — any OpenAI-compatible server (``vllm serve``,
  llama.cpp, OpenAI) through the same engine as the judges (:func:`sflib.feedback.annotate.annotate` with an
  :class:`~sflib.judges.openai_judge.OpenAIJudge` configured with sampling parameters): bounded
  concurrency, retries, and the annotation store, so a re-run resumes and pays nothing twice.

Reproducibility (local): sample ``s`` of an instruction is drawn with its own random generator
seeded by ``hash(hash(seed, instruction_id), s)``. The samples therefore do not depend on which
other instructions are in the run, on the batch size, or on ``k`` (a run with ``k=8`` starts with
the same 4 samples as a run with ``k=4``), so a subset run reproduces the same samples.
(Batches mix prompts of different lengths with left padding; a last-bit floating-point difference
could in principle flip one token, but the random draws themselves are per sample.)

Resume (local): every finished sample is appended to a JSONL file under
``outputs/generations/`` named after the generator and a hash of the sampling parameters; a
killed run picks up where it stopped, and a later run with the same parameters (on the same or a
subset of the instructions) reads its samples from there instead of generating them again.

Empty outputs are kept (with their ``finish_reason``) and counted in a warning.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import pandas as pd

from ..core.data import RESPONSE_COLUMNS, DataError, clean_input, make_id, make_response_id, write_generations
from ..core.prompts import alpaca_prompt
from ..io.write import write_table

PROMPT_STYLES = ("chat", "alpaca")
#: extra columns of a responses table written here (after the canonical ones)
EXTRA_COLUMNS = ["sample", "n_tokens", "finish_reason"]
GENERATION_TEMPLATE_VERSION = "generate-v1"


# ----------------------------------------------------------------------------- helpers

def _int_hash(*parts: object) -> int:
    """A non-negative 63-bit integer from the parts (stable across runs and machines)."""
    text = "\x1f".join(str(p) for p in parts)
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:15], 16)


def instruction_seed(seed: int, instruction_id: str) -> int:
    """The seed of one instruction: ``hash(seed, instruction_id)``."""
    return _int_hash("instruction", seed, instruction_id)


def sample_seed(seed: int, instruction_id: str, sample: int) -> int:
    """The seed of sample ``sample`` of an instruction, derived from :func:`instruction_seed`."""
    return _int_hash("sample", instruction_seed(seed, instruction_id), sample)


def prepare_instructions(instructions: pd.DataFrame) -> pd.DataFrame:
    """Instructions with ``instruction_id`` (from ``id`` or computed), a clean ``input``, one row each.

    Accepts a canonical instructions table (``id, instruction, input, source``) or any frame with
    ``instruction`` (and optionally ``input``, ``id``/``instruction_id``, ``source``/``dataset``).
    Repeated instructions are dropped with a warning that gives the count.
    """
    if "instruction" not in instructions:
        raise DataError(None, f"instructions table has no 'instruction' column (columns: {', '.join(instructions.columns)})",
                        field="instruction")
    df = instructions.copy()
    df["input"] = [clean_input(x) for x in df["input"]] if "input" in df else ""
    blank = df["instruction"].astype(str).str.strip() == ""
    if blank.any():
        raise DataError(None, "instruction is empty", row=int(blank.values.argmax()) + 1, field="instruction")
    if "instruction_id" not in df:
        df["instruction_id"] = df["id"] if "id" in df else [make_id(i, x) for i, x in zip(df["instruction"], df["input"])]
    if "source" not in df:
        df["source"] = df["dataset"] if "dataset" in df else ""
    dup = df.duplicated("instruction_id")
    if dup.any():
        warnings.warn(f"{int(dup.sum())} repeated instruction(s) (same instruction and input) appear more than "
                      f"once; each is sampled once", stacklevel=3)
        df = df.loc[~dup]
    return df[["instruction_id", "instruction", "input", "source"]].reset_index(drop=True)


def pick_instructions(instructions: pd.DataFrame, n: int | None, seed: int = 0,
                      max_chars: int | None = None) -> pd.DataFrame:
    """A reproducible random sample of ``n`` instructions (all when ``n`` is None or too large).

    ``max_chars`` keeps only instructions whose instruction + input is at most that long (short
    prompts keep CPU runs quick); the count left out is reported in a warning.
    """
    df = instructions
    if max_chars is not None:
        length = df["instruction"].str.len() + df["input"].fillna("").astype(str).str.len()
        keep = length <= max_chars
        if not keep.all():
            warnings.warn(f"max_chars={max_chars}: {int((~keep).sum())} of {len(df)} instructions are longer and "
                          f"were not considered", stacklevel=2)
        df = df.loc[keep]
    if n is not None and n < len(df):
        df = df.sample(n=n, random_state=seed)
    return df.reset_index(drop=True)


def user_message(instruction: str, input: object = "") -> str:
    """The user turn for a chat-template prompt: the instruction, then the input (if any)."""
    inp = clean_input(input)
    return f"{instruction}\n\n{inp}" if inp else instruction


def build_prompt(tokenizer, instruction: str, input: object = "", prompt_style: str = "chat") -> str:
    """The prompt text for one instruction: the model's chat template or the Alpaca prompt."""
    if prompt_style == "alpaca":
        return alpaca_prompt(instruction, input)
    if prompt_style != "chat":
        raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("this tokenizer has no chat template; use prompt_style='alpaca'")
    return tokenizer.apply_chat_template([{"role": "user", "content": user_message(instruction, input)}],
                                         tokenize=False, add_generation_prompt=True)


def generator_name(model: str) -> str:
    """A short generator name for a model alias or path (the folder name for a path)."""
    if str(model).lower() in ("smollm2", "smollm2-135m"):
        return "smollm2-135m-instruct"
    return Path(str(model).rstrip("/")).name or str(model)


def warn_empty(responses: pd.DataFrame, stacklevel: int = 3) -> int:
    """Warn (with counts) about empty responses; they are kept. Returns how many there are."""
    empty = responses["response"].fillna("").astype(str).str.strip() == ""
    n = int(empty.sum())
    if n:
        n_inst = responses.loc[empty, "instruction_id"].nunique()
        warnings.warn(f"{n} of {len(responses)} responses are empty (in {n_inst} of "
                      f"{responses['instruction_id'].nunique()} instructions); they are kept, marked by an empty "
                      f"'response'", stacklevel=stacklevel)
    return n


def _finish(rows: list[dict], instr: pd.DataFrame, generator: str, params: dict) -> pd.DataFrame:
    """Assemble the responses table in instruction order, then sample order."""
    if not rows:
        return pd.DataFrame(columns=RESPONSE_COLUMNS + EXTRA_COLUMNS + ["source"])
    got = pd.DataFrame(rows)
    df = instr.merge(got, on="instruction_id", how="inner")
    df["order"] = df["instruction_id"].map({iid: i for i, iid in enumerate(instr["instruction_id"])})
    df = df.sort_values(["order", "sample"]).drop(columns="order").reset_index(drop=True)
    df["response"] = df["response"].fillna("").astype(str)
    df["response_id"] = [make_response_id(i, r) for i, r in zip(df["instruction_id"], df["response"])]
    df["generator"] = generator
    df["params"] = json.dumps(params, sort_keys=True)
    df["sample"] = df["sample"].astype(int)
    cols = RESPONSE_COLUMNS + EXTRA_COLUMNS + ["source"]
    for c in cols:
        if c not in df:
            df[c] = None
    warn_empty(df, stacklevel=4)
    return df[cols]


def write_responses(responses: pd.DataFrame, path: os.PathLike | str,
                    generations_path: os.PathLike | str | None = None) -> list[Path]:
    """Write responses as a canonical table (``.jsonl``/``.parquet``) and, optionally, in the original
    generation JSON layout ``[{"instruction", "input", "responses": [...]}]``."""
    paths = [write_table(responses, path)]
    if generations_path is not None:
        paths.append(write_generations(responses, generations_path))
    return paths
