"""Stage 6: reward models trained on ratings or on rankings, on any Hugging Face backbone.

Two objectives, one backbone loaded as ``AutoModelForSequenceClassification`` with one output
(the reward, ``r``):

- **ratings RM**: regression of ``sigmoid(r)`` onto ``(score - 1) / 6`` with squared error;
- **rankings RM**: Bradley–Terry, ``-log sigmoid(r_preferred - r_other - margin)``; ties
  (``decision == "equal"``) are excluded by default (``ties="include"`` pulls tied rewards
  together with ``-(log sigmoid(d) + log sigmoid(-d)) / 2``).

The text a reward model reads is the Alpaca prompt (:func:`sflib.prompts.alpaca_prompt`, with or
without input) followed by the response, tokenised by :func:`encode` for training and scoring
alike. When the text is longer than ``max_length`` the *response is kept*: the prompt is cut in
its middle (its head and its ``### Response:`` tail survive) down to at most half the budget
before the response is cut at its end.

Efficiency: every batch is padded only to its longest sequence, training batches are grouped by
length (``LengthGroupedSampler``) and :func:`score` sorts by length, so little compute is spent
on padding; bf16 (or fp16) is used on GPUs that support it. Training runs on the Hugging Face
``Trainer`` (logging, a checkpoint every epoch, resume, ``report_to`` = none / tensorboard /
wandb), optionally with LoRA adapters through ``peft`` (the score head is trained and saved with
them through ``modules_to_save``).

A trained reward model is a folder: the weights (or LoRA adapter + score head), the tokenizer and
``reward_model.json`` recording the kind, the prompt format (:data:`sflib.prompts.PROMPT_FORMAT`),
the backbone and ``max_length``; :meth:`RewardModel.load` refuses a folder whose prompt format
differs from the current one.

Command line::

    python -m sflib train-rm --kind rankings --data feedback_rankings.csv --output outputs/reward_models/rankings
    python -m sflib score --rm outputs/reward_models/rankings --data model_outputs.json --output scored.jsonl

Several GPUs (data parallel, one process per GPU; the same code path as one process)::

    accelerate launch --num_processes 4 -m sflib train-rm --kind ratings --data ratings.jsonl \\
        --backbone meta-llama/Llama-3.2-1B --lora --batch-size 8 --output outputs/reward_models/ratings
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from . import __version__
from .data import DECISIONS, SCORE_MAX, SCORE_MIN, DataError, atomic_write_text, clean_input, make_id
from .prompts import PROMPT_FORMAT, alpaca_prompt

KINDS = ("ratings", "rankings")
META_NAME = "reward_model.json"
TRUNCATION = "keep-response-v1"
log = logging.getLogger(__name__)


class RewardModelError(ValueError):
    """A reward model cannot be trained or used as asked (bad backbone, tokenizer, data or folder)."""


# ----------------------------------------------------------------------------- losses

def score_to_target(score) -> np.ndarray | torch.Tensor:
    """The ratings RM target: ``(score - 1) / 6`` maps the 1–7 scale onto [0, 1]."""
    return (score - SCORE_MIN) / (SCORE_MAX - SCORE_MIN)


def reward_to_score(reward) -> np.ndarray:
    """A ratings RM's reward mapped back to the 1–7 scale: ``1 + 6 * sigmoid(reward)``."""
    return SCORE_MIN + (SCORE_MAX - SCORE_MIN) / (1.0 + np.exp(-np.asarray(reward, dtype=float)))


def ratings_loss(rewards: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error between ``sigmoid(reward)`` and the target ``(score - 1) / 6``."""
    return torch.mean((torch.sigmoid(rewards.float()) - targets.float()) ** 2)


def bradley_terry_loss(r_preferred: torch.Tensor, r_other: torch.Tensor, margin: float = 0.0,
                       ties: torch.Tensor | None = None) -> torch.Tensor:
    """Mean Bradley–Terry loss ``-log sigmoid(r_preferred - r_other - margin)`` over pairs.

    Pairs flagged in ``ties`` (when ties are included in training) use
    ``-(log sigmoid(d) + log sigmoid(-d)) / 2`` instead, which is smallest when the rewards are equal.
    """
    d = r_preferred.float() - r_other.float()
    loss = -torch.nn.functional.logsigmoid(d - margin)
    if ties is not None and bool(ties.any()):
        tie_loss = -0.5 * (torch.nn.functional.logsigmoid(d) + torch.nn.functional.logsigmoid(-d))
        loss = torch.where(ties.bool(), tie_loss, loss)
    return loss.mean()


# ----------------------------------------------------------------------------- text -> tokens

def rm_text(instruction: str, input: object, response: str) -> str:
    """The untruncated text a reward model reads: the Alpaca prompt followed by the response."""
    return alpaca_prompt(instruction, input) + str(response)


def _special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer adds before and after a text (e.g. [CLS] ... [SEP], or <bos> ...)."""
    cached = getattr(tokenizer, "_sflib_special", None)
    if cached is not None:
        return cached
    probe = "reward model probe text"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i:i + len(plain)] == plain:
            result = (list(full[:i]), list(full[i + len(plain):]))
            break
    else:  # unusual tokenizer: fall back to no special tokens
        result = ([], [])
    try:
        tokenizer._sflib_special = result
    except AttributeError:
        pass
    return result


def _fit(prompt: list[int], response: list[int], budget: int) -> list[int]:
    """Fit prompt + response into ``budget`` tokens, keeping the response (see module docstring)."""
    if len(prompt) + len(response) <= budget:
        return prompt + response
    p_keep = min(len(prompt), max(budget // 2, budget - len(response)))
    r_keep = min(len(response), budget - p_keep)
    if p_keep < len(prompt):
        tail = min(p_keep // 4, 32)  # the end of the prompt: input tail and "### Response:"
        prompt = prompt[: p_keep - tail] + (prompt[len(prompt) - tail:] if tail else [])
    return prompt + response[:r_keep]


def encode(tokenizer, instructions: Sequence[str], responses: Sequence[str], max_length: int,
           inputs: Sequence[object] | None = None) -> list[list[int]]:
    """Token ids of ``alpaca_prompt(instruction, input) + response`` for each row, at most ``max_length`` long.

    The prompt and the response are tokenised separately so truncation can keep the response;
    the tokenizer's special tokens (e.g. ``[CLS]``/``[SEP]``, ``<bos>``) are added around them.
    """
    if len(instructions) != len(responses):
        raise ValueError(f"{len(instructions)} instructions but {len(responses)} responses; give one instruction per response")
    inputs = [""] * len(instructions) if inputs is None else list(inputs)
    if len(inputs) != len(instructions):
        raise ValueError(f"{len(inputs)} inputs but {len(instructions)} instructions; give one input per instruction (or none)")
    prefix, suffix = _special_tokens(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    if budget < 8:
        raise ValueError(f"max_length={max_length} leaves no room for text; use at least {len(prefix) + len(suffix) + 8}")
    prompts = [alpaca_prompt(i, x) for i, x in zip(instructions, inputs)]
    # each distinct prompt is tokenised once (k responses share an instruction)
    unique = list(dict.fromkeys(prompts))
    p_ids = dict(zip(unique, tokenizer(unique, add_special_tokens=False, verbose=False)["input_ids"])) if unique else {}
    r_ids = tokenizer([str(r) for r in responses], add_special_tokens=False, verbose=False)["input_ids"] if len(responses) else []
    return [prefix + _fit(list(p_ids[p]), list(r), budget) + suffix for p, r in zip(prompts, r_ids)]


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int, length: int | None = None,
              pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad to the longest sequence (or to ``length``): ``input_ids`` and ``attention_mask``."""
    longest = max(len(s) for s in sequences)
    n = max(longest, length or 0)
    if pad_to_multiple_of:
        n = int(math.ceil(n / pad_to_multiple_of) * pad_to_multiple_of)
    ids = torch.full((len(sequences), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), n), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask}


# ----------------------------------------------------------------------------- datasets & collator

class RatingsDataset(torch.utils.data.Dataset):
    """Encoded ratings: items ``{input_ids, labels}`` with ``labels = (score - 1) / 6``."""

    def __init__(self, ids: list[list[int]], scores: Sequence[float]):
        self.ids, self.targets = ids, [float(score_to_target(float(s))) for s in scores]
        self.lengths = [len(x) for x in ids]

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.targets[i]}


class PairsDataset(torch.utils.data.Dataset):
    """Encoded ranking pairs: items ``{input_ids_preferred, input_ids_other, tie}``."""

    def __init__(self, preferred: list[list[int]], other: list[list[int]], ties: Sequence[bool]):
        self.preferred, self.other, self.ties = preferred, other, [bool(t) for t in ties]
        self.lengths = [max(len(a), len(b)) for a, b in zip(preferred, other)]

    def __len__(self):
        return len(self.preferred)

    def __getitem__(self, i):
        return {"input_ids_preferred": self.preferred[i], "input_ids_other": self.other[i], "tie": self.ties[i]}


@dataclass
class RewardCollator:
    """Dynamic padding to the longest sequence of the batch.

    Ratings batches give ``input_ids, attention_mask, labels``; pair batches stack the preferred
    then the other responses into one ``[2B, L]`` batch (one forward pass) plus ``ties`` ``[B]``.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        if "labels" in features[0]:
            batch = pad_batch([f["input_ids"] for f in features], self.pad_token_id,
                              pad_to_multiple_of=self.pad_to_multiple_of)
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.float32)
            return batch
        seqs = [f["input_ids_preferred"] for f in features] + [f["input_ids_other"] for f in features]
        batch = pad_batch(seqs, self.pad_token_id, pad_to_multiple_of=self.pad_to_multiple_of)
        batch["ties"] = torch.tensor([f["tie"] for f in features], dtype=torch.bool)
        return batch


# ----------------------------------------------------------------------------- data preparation

def _require_columns(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(None, f"{what} table lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns))})",
                        field=missing[0])


def _instruction_ids(df: pd.DataFrame) -> pd.Series:
    if "instruction_id" in df.columns:
        return df["instruction_id"].astype(str)
    inputs = df["input"] if "input" in df.columns else [""] * len(df)
    return pd.Series([make_id(i, x) for i, x in zip(df["instruction"], inputs)], index=df.index)


def prepare_ratings(ratings: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Usable ratings rows and counts; rows without a score (an invalid judge reply) are dropped and counted.

    A score that is present but not an integer on the 1–7 scale raises :class:`DataError` naming
    the row (1-based) and the field, before any training starts.
    """
    _require_columns(ratings, ["instruction", "response", "score"], "ratings")
    df = ratings.reset_index(drop=True)
    missing = df["score"].isna()
    for n, v in enumerate(df["score"], 1):
        if pd.isna(v):
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise DataError(None, f"score {v!r} is not a number on the {SCORE_MIN}-{SCORE_MAX} scale", row=n,
                            field="score") from None
        if not (SCORE_MIN <= f <= SCORE_MAX) or f != int(f):
            raise DataError(None, f"score {v!r} is outside the {SCORE_MIN}-{SCORE_MAX} integer scale; "
                                  "fix or drop that row before training", row=n, field="score")
    out = df.loc[~missing].copy()
    out["score"] = out["score"].astype(float).astype(int)
    out["input"] = [clean_input(x) for x in out["input"]] if "input" in out else ""
    return out.reset_index(drop=True), {"rows": len(df), "without_score": int(missing.sum()), "used": len(out)}


def prepare_rankings(rankings: pd.DataFrame, ties: str = "exclude") -> tuple[pd.DataFrame, dict]:
    """Usable ranking pairs with ``preferred``/``other`` columns and counts.

    Ties are excluded (``ties="exclude"``, the default) or kept as tie pairs (``"include"``);
    rows without a decision (an invalid judge reply) are dropped and counted; any other decision
    than a / b / equal raises :class:`DataError` naming the row.
    """
    if ties not in ("exclude", "include"):
        raise ValueError(f"ties must be 'exclude' or 'include', not {ties!r}")
    _require_columns(rankings, ["instruction", "response1", "response2", "decision"], "rankings")
    df = rankings.reset_index(drop=True)
    missing = df["decision"].isna()
    for n, v in enumerate(df["decision"], 1):
        if not pd.isna(v) and v not in DECISIONS:
            raise DataError(None, f"decision {v!r} is not one of {', '.join(DECISIONS)}", row=n, field="decision")
    is_tie = df["decision"] == "equal"
    keep = ~missing & (~is_tie if ties == "exclude" else True)
    out = df.loc[keep].copy()
    b = out["decision"] == "b"
    out["preferred"] = np.where(b, out["response2"], out["response1"])
    out["other"] = np.where(b, out["response1"], out["response2"])
    out["tie"] = out["decision"] == "equal"
    out["input"] = [clean_input(x) for x in out["input"]] if "input" in out else ""
    counts = {"rows": len(df), "without_decision": int(missing.sum()), "ties": int(is_tie.sum()),
              "ties_excluded": int(is_tie.sum()) if ties == "exclude" else 0, "used": len(out)}
    return out.reset_index(drop=True), counts


def validation_instructions(ids: Iterable[str], val_fraction: float = 0.2, seed: int = 0) -> set[str]:
    """A seeded choice of ``ceil(val_fraction * n)`` instruction ids (at least one when 0 < val_fraction and n ≥ 2)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    unique = sorted(set(map(str, ids)))
    n_val = 0 if val_fraction == 0 else min(len(unique) - 1, max(1, math.ceil(val_fraction * len(unique))))
    order = np.random.default_rng(seed).permutation(len(unique))
    return {unique[i] for i in order[:max(n_val, 0)]}


def split_by_instruction(df: pd.DataFrame, val_fraction: float = 0.2, seed: int = 0,
                         val_ids: Iterable[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train / validation frames split by instruction (never by row): an instruction is on one side only.

    Pass ``val_ids`` (e.g. from :func:`validation_instructions` over the union of the ratings and the
    rankings) so the two feedback tables share one split; otherwise the split is drawn from ``df``.
    """
    ids = _instruction_ids(df)
    chosen = set(map(str, val_ids)) if val_ids is not None else validation_instructions(ids, val_fraction, seed)
    is_val = ids.isin(chosen).to_numpy()
    return df.loc[~is_val].reset_index(drop=True), df.loc[is_val].reset_index(drop=True)


# ----------------------------------------------------------------------------- backbones

@contextmanager
def _quiet_transformers():
    """Silence the 'newly initialised weights' notices while loading a backbone with a fresh head."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_tokenizer(backbone: str, set_pad_token: bool = True):
    """The backbone's tokenizer with a pad token (right padding).

    A tokenizer without a pad token gets its end-of-sequence token as pad (the usual recipe for
    decoder-only models) when ``set_pad_token``; with neither, a :class:`RewardModelError` says so.
    """
    from transformers import AutoTokenizer
    from .models import resolve

    path = resolve(backbone)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        if set_pad_token and tok.eos_token is not None:
            tok.pad_token = tok.eos_token
            log.info("tokenizer of %s has no pad token; using its eos token %r", backbone, tok.eos_token)
        else:
            raise RewardModelError(
                f"the tokenizer of {backbone} has no pad token"
                f"{' and no eos token to use instead' if tok.eos_token is None else ''}; batched reward "
                "models need one: save the tokenizer with a pad_token (tokenizer.pad_token = ...) and retry")
    tok.padding_side = "right"
    return tok


def load_backbone(backbone: str, tokenizer, dtype: torch.dtype | None = None):
    """``AutoModelForSequenceClassification`` with one output; a clear error when there is no such head."""
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from .models import resolve

    path = resolve(backbone)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise RewardModelError(f"cannot load a model configuration from {backbone!r} ({path}): {e}") from None
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES as heads

    if config.model_type not in heads:
        raise RewardModelError(
            f"backbone {backbone!r} is a '{config.model_type}' model, which has no sequence-classification head in "
            "transformers (AutoModelForSequenceClassification); choose an encoder (BERT-like) or a decoder "
            "(Llama-, Mistral-, Qwen-like) backbone")
    kwargs = {"num_labels": 1, "pad_token_id": tokenizer.pad_token_id}
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        with _quiet_transformers():
            model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    except (ValueError, RuntimeError) as e:
        raise RewardModelError(f"{backbone!r} does not load as a sequence classifier with one output: {e}") from None
    if model.config.num_labels != 1:
        raise RewardModelError(f"{backbone!r} has {model.config.num_labels} outputs; a reward model needs one")
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def auto_precision(precision: str = "auto") -> str:
    """'bf16' on GPUs that support it, 'fp16' on other GPUs, 'fp32' on CPU; or the given value."""
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be auto, fp32, bf16 or fp16, not {precision!r}")
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


# ----------------------------------------------------------------------------- the reward model

@dataclass
class RewardModel:
    """A trained reward model: the (possibly LoRA-wrapped) classifier, its tokenizer and its metadata."""

    model: Any
    tokenizer: Any
    meta: dict

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def max_length(self) -> int:
        return int(self.meta["max_length"])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def save(self, path: os.PathLike | str) -> Path:
        """Write weights (or LoRA adapter + score head), tokenizer and ``reward_model.json`` to ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        atomic_write_text(path / META_NAME, json.dumps(self.meta, indent=2, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, path: os.PathLike | str, device: str | torch.device | None = None,
             dtype: torch.dtype | None = None, kind: str | None = None, merge_lora: bool = False) -> "RewardModel":
        """Load a folder written by :meth:`save`, checking its prompt format (and ``kind`` when given).

        A LoRA reward model loads its backbone (recorded in the metadata) and then the adapter with
        its score head; ``merge_lora`` folds the adapter into the weights for faster scoring.
        """
        from transformers import AutoModelForSequenceClassification

        path = Path(path)
        meta_path = path / META_NAME
        if not meta_path.exists():
            raise RewardModelError(f"{path} is not a reward model folder: it has no {META_NAME} (train one with "
                                   "`python -m sflib train-rm` or sflib.reward_model.train_reward_model)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("prompt_format") != PROMPT_FORMAT:
            raise RewardModelError(f"{path} was trained with prompt format {meta.get('prompt_format')!r} but this "
                                   f"sflib formats prompts as {PROMPT_FORMAT!r}; retrain it or use a matching sflib")
        if kind is not None and meta.get("kind") != kind:
            raise RewardModelError(f"{path} is a {meta.get('kind')} reward model, not a {kind} one")
        tok = load_tokenizer(str(path))
        if meta.get("lora"):
            from peft import PeftModel

            base = load_backbone(meta["backbone"], tok, dtype=dtype)
            with _quiet_transformers():
                model = PeftModel.from_pretrained(base, str(path))
            if merge_lora:
                model = model.merge_and_unload()
        else:
            kwargs = {"dtype": dtype} if dtype is not None else {}
            model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model.to(device).eval()
        return cls(model, tok, meta)


def score(rm: RewardModel | os.PathLike | str, instructions: Sequence[str], responses: Sequence[str],
          batch_size: int = 32, inputs: Sequence[object] | None = None, progress: bool | None = None,
          pad_to_multiple_of: int | None = None) -> np.ndarray:
    """One reward (float) per response, in the order given.

    Sequences are sorted by length (longest first) and batched with padding to the longest in the
    batch only; results are put back in input order. ``rm`` may be a :class:`RewardModel` or its folder.
    """
    from tqdm.auto import tqdm

    if not isinstance(rm, RewardModel):
        rm = RewardModel.load(rm)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    ids = encode(rm.tokenizer, list(instructions), list(responses), rm.max_length, inputs)
    out = np.empty(len(ids), dtype=np.float64)
    if not ids:
        return out
    order = np.argsort([-len(x) for x in ids], kind="stable")
    if pad_to_multiple_of is None and rm.device.type == "cuda":
        pad_to_multiple_of = 8
    model, device = rm.model, rm.device
    was_training = model.training
    model.eval()
    batches = range(0, len(order), batch_size)
    show = progress if progress is not None else len(batches) > 4
    with torch.inference_mode():
        for start in tqdm(batches, desc="scoring", disable=not show, leave=False):
            idx = order[start:start + batch_size]
            batch = pad_batch([ids[i] for i in idx], rm.tokenizer.pad_token_id, pad_to_multiple_of=pad_to_multiple_of)
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            out[idx] = logits[:, 0].float().cpu().numpy()
    model.train(was_training)
    return out


def score_frame(rm: RewardModel, df: pd.DataFrame, response_column: str = "response", batch_size: int = 32,
                progress: bool | None = None) -> np.ndarray:
    """Rewards for a table with ``instruction``, optional ``input`` and a response column."""
    _require_columns(df, ["instruction", response_column], "responses")
    inputs = df["input"].tolist() if "input" in df.columns else None
    return score(rm, df["instruction"].tolist(), df[response_column].tolist(), batch_size, inputs, progress)


# ----------------------------------------------------------------------------- training

@dataclass
class TrainConfig:
    """Training settings for :func:`train_reward_model` (recorded in ``reward_model.json``)."""

    backbone: str = "minilm"
    max_length: int = 384
    epochs: float = 2.0
    max_steps: int = -1
    batch_size: int = 8
    eval_batch_size: int = 32
    gradient_accumulation_steps: int = 1
    learning_rate: float | None = None  # default: 5e-5 full fine-tuning, 2e-4 with LoRA
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | None = None  # default: peft's choice for the architecture
    margin: float = 0.0
    ties: str = "exclude"
    precision: str = "auto"
    gradient_checkpointing: bool = False
    report_to: str | list[str] = "none"
    logging_steps: int = 5
    save_checkpoints: bool = True
    save_total_limit: int | None = 2
    seed: int = 0
    group_by_length: bool = True
    progress: bool = True


@dataclass
class TrainResult:
    """What :func:`train_reward_model` returns: the reward model, the Trainer and the data counts."""

    rm: RewardModel
    trainer: Any
    counts: dict
    log_history: list[dict] = field(default_factory=list)


class RewardTrainer:  # placeholder replaced below once transformers is imported lazily
    pass


def _trainer_class():
    """The ``Trainer`` subclass (built lazily so importing sflib does not import transformers)."""
    global RewardTrainer
    if getattr(RewardTrainer, "_built", False):
        return RewardTrainer
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class _RewardTrainer(Trainer):
        """Trainer computing the ratings (MSE on sigmoid) or the Bradley–Terry loss on our batches."""

        _built = True

        def __init__(self, *args, kind: str, margin: float = 0.0, **kwargs):
            super().__init__(*args, **kwargs)
            self.kind, self.margin = kind, margin
            self.loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            rewards = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits[:, 0]
            if self.kind == "ratings":
                loss = ratings_loss(rewards, inputs["labels"])
            else:
                b = inputs["ties"].shape[0]
                loss = bradley_terry_loss(rewards[:b], rewards[b:], self.margin, inputs["ties"])
            return (loss, {"rewards": rewards}) if return_outputs else loss

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            inputs = self._prepare_inputs(inputs)
            with torch.no_grad(), self.compute_loss_context_manager():
                loss = self.compute_loss(model, inputs)
            return loss.detach(), None, None

        def _get_train_sampler(self, train_dataset=None):
            ds = train_dataset if train_dataset is not None else self.train_dataset
            if self.args.train_sampling_strategy == "group_by_length" and hasattr(ds, "lengths"):
                return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                            lengths=ds.lengths)
            return super()._get_train_sampler(train_dataset)

        def _get_eval_sampler(self, eval_dataset):
            return torch.utils.data.SequentialSampler(eval_dataset)

    RewardTrainer = _RewardTrainer
    return RewardTrainer


def _dataset(kind: str, df: pd.DataFrame, tokenizer, max_length: int):
    if kind == "ratings":
        return RatingsDataset(encode(tokenizer, df["instruction"].tolist(), df["response"].tolist(), max_length,
                                     df["input"].tolist()), df["score"].tolist())
    instr, inp = df["instruction"].tolist(), df["input"].tolist()
    return PairsDataset(encode(tokenizer, instr, df["preferred"].tolist(), max_length, inp),
                        encode(tokenizer, instr, df["other"].tolist(), max_length, inp), df["tie"].tolist())


def _prepare(kind: str, df: pd.DataFrame, ties: str) -> tuple[pd.DataFrame, dict]:
    return prepare_ratings(df) if kind == "ratings" else prepare_rankings(df, ties)


def train_reward_model(kind: str, train: pd.DataFrame, output_dir: os.PathLike | str, *,
                       eval: pd.DataFrame | None = None, config: TrainConfig | None = None,
                       resume_from_checkpoint: str | bool | None = None, **overrides) -> TrainResult:
    """Train a ``"ratings"`` or ``"rankings"`` reward model and save it to ``output_dir``.

    ``train`` / ``eval`` are canonical ratings (``instruction, input, response, score``) or rankings
    (``instruction, input, response1, response2, decision``) tables. Settings come from ``config``
    with keyword ``overrides`` (any :class:`TrainConfig` field). Checkpoints (one per epoch) go to
    ``output_dir/checkpoints``; ``resume_from_checkpoint`` is a checkpoint folder, or ``True`` for
    the latest one there. Every data, tokenizer and backbone problem is raised before training.
    """
    from transformers import TrainingArguments, set_seed

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    config = config or TrainConfig()
    unknown = set(overrides) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise TypeError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    config = TrainConfig(**{**asdict(config), **overrides})
    output_dir = Path(output_dir)

    # 1. data (cheap checks first)
    train_df, counts = _prepare(kind, train, config.ties)
    if counts["used"] == 0:
        detail = (f"{counts['without_score']} of {counts['rows']} rows have no score" if kind == "ratings" else
                  f"{counts['rows']} rows: {counts['ties_excluded']} ties excluded, {counts['without_decision']} without a decision")
        raise RewardModelError(f"no {kind} training examples left after filtering ({detail}); "
                               + ("include ties (ties='include') or " if kind == "rankings" else "") + "add feedback")
    eval_df, eval_counts = (None, None)
    if eval is not None and len(eval):
        eval_df, eval_counts = _prepare(kind, eval, config.ties)
        if eval_counts["used"] == 0:
            warnings.warn(f"the {kind} validation set is empty after filtering; training without an eval loss")
            eval_df = None
    counts = {"train": counts, "eval": eval_counts}

    # 2. tokenizer and backbone
    set_seed(config.seed)
    tokenizer = load_tokenizer(config.backbone)
    precision = auto_precision(config.precision)
    model = load_backbone(config.backbone, tokenizer)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and config.max_length > limit:
        raise RewardModelError(f"max_length={config.max_length} is longer than {config.backbone!r} supports "
                               f"({limit} positions); use --max-length {limit} or less")
    if config.lora:
        from peft import LoraConfig, TaskType, get_peft_model

        lora_config = LoraConfig(task_type=TaskType.SEQ_CLS, r=config.lora_r, lora_alpha=config.lora_alpha,
                                 lora_dropout=config.lora_dropout, target_modules=config.lora_target_modules)
        model = get_peft_model(model, lora_config)  # SEQ_CLS keeps the score head trainable (modules_to_save)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()

    # 3. data -> tokens
    train_ds = _dataset(kind, train_df, tokenizer, config.max_length)
    eval_ds = _dataset(kind, eval_df, tokenizer, config.max_length) if eval_df is not None else None
    on_gpu = torch.cuda.is_available()
    lr = config.learning_rate if config.learning_rate is not None else (2e-4 if config.lora else 5e-5)
    args = TrainingArguments(
        output_dir=str(output_dir / "checkpoints"),
        num_train_epochs=config.epochs, max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size, per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=lr, weight_decay=config.weight_decay, warmup_steps=config.warmup_ratio,  # float < 1: a ratio
        lr_scheduler_type="linear",
        bf16=precision == "bf16", fp16=precision == "fp16",
        logging_strategy="steps", logging_steps=config.logging_steps, logging_first_step=True,
        eval_strategy="epoch" if eval_ds is not None else "no",
        save_strategy="epoch" if config.save_checkpoints else "no", save_total_limit=config.save_total_limit,
        report_to=config.report_to, seed=config.seed,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        remove_unused_columns=False, label_names=["labels"] if kind == "ratings" else ["ties"],
        dataloader_num_workers=0, disable_tqdm=not config.progress, use_cpu=not on_gpu,
    )
    trainer = _trainer_class()(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
        data_collator=RewardCollator(tokenizer.pad_token_id, 8 if on_gpu else None), kind=kind, margin=config.margin,
    )
    started = time.time()
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    if not config.progress:
        hf_logging.disable_progress_bar()  # no "writing shards" bars for every checkpoint
    try:
        trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    finally:
        if bars:
            hf_logging.enable_progress_bar()

    meta = {
        "format": "sflib-reward-model", "version": 1, "kind": kind, "prompt_format": PROMPT_FORMAT,
        "truncation": TRUNCATION, "backbone": config.backbone, "lora": config.lora, "max_length": config.max_length,
        "objective": ("mse(sigmoid(reward), (score-1)/6)" if kind == "ratings"
                      else f"bradley-terry (margin {config.margin}, ties {config.ties})"),
        "counts": counts, "config": asdict(config), "precision": precision,
        "train_seconds": round(time.time() - started, 1), "sflib_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    rm = RewardModel(unwrapped, tokenizer, meta)
    if trainer.is_world_process_zero():
        with _quiet_transformers():
            rm.save(output_dir)
    unwrapped.eval()
    return TrainResult(rm=rm, trainer=trainer, counts=counts, log_history=list(trainer.state.log_history))


def train_ratings_rm(ratings: pd.DataFrame, output_dir, **kwargs) -> TrainResult:
    """Shorthand for ``train_reward_model("ratings", ratings, output_dir, **kwargs)``."""
    return train_reward_model("ratings", ratings, output_dir, **kwargs)


def train_rankings_rm(rankings: pd.DataFrame, output_dir, **kwargs) -> TrainResult:
    """Shorthand for ``train_reward_model("rankings", rankings, output_dir, **kwargs)``."""
    return train_reward_model("rankings", rankings, output_dir, **kwargs)


def loss_history(log_history: list[dict]) -> pd.DataFrame:
    """Train and eval losses from ``trainer.state.log_history``: ``step, epoch, split, loss``."""
    rows = []
    for rec in log_history:
        if "loss" in rec:
            rows.append({"step": rec.get("step"), "epoch": rec.get("epoch"), "split": "train", "loss": rec["loss"]})
        if "eval_loss" in rec:
            rows.append({"step": rec.get("step"), "epoch": rec.get("epoch"), "split": "eval", "loss": rec["eval_loss"]})
    return pd.DataFrame(rows, columns=["step", "epoch", "split", "loss"])


# ----------------------------------------------------------------------------- evaluation

def _score_unique(rm: RewardModel, df: pd.DataFrame, columns: Sequence[str], batch_size: int,
                  progress: bool | None) -> list[np.ndarray]:
    """Rewards for several response columns of one table, scoring each distinct text once."""
    inputs = df["input"].tolist() if "input" in df.columns else [""] * len(df)
    keys, rows = {}, []
    for col in columns:
        for ins, inp, resp in zip(df["instruction"], inputs, df[col]):
            key = (ins, clean_input(inp), resp)
            if key not in keys:
                keys[key] = len(rows)
                rows.append(key)
    rewards = score(rm, [r[0] for r in rows], [r[2] for r in rows], batch_size, [r[1] for r in rows], progress)
    return [np.array([rewards[keys[(i, clean_input(x), r)]] for i, x, r in zip(df["instruction"], inputs, df[col])])
            for col in columns]


def pairwise_accuracy(rm: RewardModel, rankings: pd.DataFrame, batch_size: int = 32,
                      progress: bool | None = None) -> dict:
    """Share of held-out ranking pairs (ties excluded) where the preferred response gets the higher reward.

    Equal rewards count one half. Returns ``pairwise_accuracy, n_pairs, ties_excluded``.
    """
    df, counts = prepare_rankings(rankings, ties="exclude")
    if not len(df):
        return {"pairwise_accuracy": float("nan"), "n_pairs": 0, "ties_excluded": counts["ties_excluded"]}
    r_pref, r_other = _score_unique(rm, df, ["preferred", "other"], batch_size, progress)
    acc = float(np.mean((r_pref > r_other) + 0.5 * (r_pref == r_other)))
    return {"pairwise_accuracy": acc, "n_pairs": len(df), "ties_excluded": counts["ties_excluded"]}


def ratings_agreement(rm: RewardModel, ratings: pd.DataFrame, batch_size: int = 32,
                      progress: bool | None = None) -> dict:
    """Spearman correlation of rewards with held-out scores, and (ratings RM only) the MSE.

    The MSE is the training objective's: ``sigmoid(reward)`` against ``(score - 1) / 6``; a rankings
    RM's rewards have no absolute scale, so its MSE is NaN.
    """
    from scipy.stats import spearmanr

    df, _ = prepare_ratings(ratings)
    if not len(df):
        return {"mse": float("nan"), "spearman": float("nan"), "n_ratings": 0}
    (rewards,) = _score_unique(rm, df, ["response"], batch_size, progress)
    target = score_to_target(df["score"].to_numpy(dtype=float))
    mse = float(np.mean((1 / (1 + np.exp(-rewards)) - target) ** 2)) if rm.kind == "ratings" else float("nan")
    rho = float(spearmanr(rewards, df["score"]).statistic) if df["score"].nunique() > 1 and len(df) > 2 else float("nan")
    return {"mse": mse, "spearman": rho, "n_ratings": len(df)}


def evaluate(rms: dict[str, RewardModel], ratings: pd.DataFrame | None = None, rankings: pd.DataFrame | None = None,
             batch_size: int = 32) -> pd.DataFrame:
    """The held-out table: one row per reward model with pairwise accuracy on ``rankings`` and
    MSE / Spearman on ``ratings`` — the cross view included (ratings RM on pairs, rankings RM on ratings)."""
    rows = []
    for name, rm in rms.items():
        row = {"reward_model": name, "kind": rm.kind}
        if rankings is not None:
            row.update(pairwise_accuracy(rm, rankings, batch_size))
        if ratings is not None:
            row.update(ratings_agreement(rm, ratings, batch_size))
        rows.append(row)
    return pd.DataFrame(rows).set_index("reward_model")


# ----------------------------------------------------------------------------- files & CLI

def read_feedback(path: os.PathLike | str, kind: str) -> pd.DataFrame:
    """Ratings or rankings from the original headerless CSV or a canonical ``.jsonl`` / ``.parquet`` table."""
    from . import data

    path = Path(path)
    if path.suffix.lower() == ".csv":
        return data.read_ratings_csv(path) if kind == "ratings" else data.read_rankings_csv(path)
    required = ["instruction", "response", "score"] if kind == "ratings" else \
        ["instruction", "response1", "response2", "decision"]
    df = data.read_table(path, required=required)
    if "input" not in df:
        df["input"] = ""
    return df


def read_responses(path: os.PathLike | str) -> tuple[pd.DataFrame, str]:
    """A table of responses to score and the name of its response column (``response`` or ``output``)."""
    from . import data

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        df = data.read_model_outputs(path)
    elif suffix == ".csv":
        df = data.read_responses_csv(path)
    else:
        df = data.read_table(path, required=["instruction"])
    column = "response" if "response" in df.columns else "output"
    if column not in df.columns:
        raise DataError(path, "has neither a 'response' nor an 'output' column", field="response")
    return df, column


def _write_scored(df: pd.DataFrame, path: Path) -> None:
    from . import data

    if path.suffix.lower() == ".csv":
        with data.atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)
    else:
        data.write_table(df, path)


def _cli_train(args) -> int:
    from . import paths

    df = read_feedback(args.data, args.kind)
    train_df, val_df = split_by_instruction(df, args.val_fraction, args.seed) if args.val_fraction > 0 else (df, None)
    output = Path(args.output) if args.output else paths.outputs_dir() / "reward_models" / args.kind
    resume = None if args.resume is None else (True if args.resume == "latest" else args.resume)
    result = train_reward_model(
        args.kind, train_df, output, eval=val_df, resume_from_checkpoint=resume,
        backbone=args.backbone, max_length=args.max_length, epochs=args.epochs, max_steps=args.max_steps,
        batch_size=args.batch_size, gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate, lora=args.lora, lora_r=args.lora_r, margin=args.margin,
        ties="include" if args.include_ties else "exclude", precision=args.precision, report_to=args.report_to,
        save_checkpoints=not args.no_checkpoints, seed=args.seed, logging_steps=args.logging_steps,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    if not result.trainer.is_world_process_zero():
        return 0
    summary = {"output": str(output), "counts": result.counts}
    if val_df is not None and len(val_df):
        summary["held_out"] = (pairwise_accuracy(result.rm, val_df) if args.kind == "rankings"
                               else ratings_agreement(result.rm, val_df))
    print(json.dumps(summary, indent=2))
    return 0


def _cli_score(args) -> int:
    df, column = read_responses(args.data)
    rm = RewardModel.load(args.rm)
    df = df.copy()
    df["reward"] = score_frame(rm, df, column, args.batch_size, progress=True)
    _write_scored(df, Path(args.output))
    print(f"scored {len(df)} responses with {args.rm} ({rm.kind} RM) -> {args.output}")
    return 0


def add_cli(subparsers) -> None:
    """Register ``train-rm`` and ``score``."""
    p = subparsers.add_parser("train-rm", help="train a ratings or rankings reward model",
                              description="Train a reward model on ratings or rankings feedback. Several GPUs: "
                                          "accelerate launch --num_processes N -m sflib train-rm ...")
    p.add_argument("--kind", choices=KINDS, required=True)
    p.add_argument("--data", required=True, help="feedback: original headerless CSV, or canonical .jsonl/.parquet")
    p.add_argument("--output", help="reward model folder (default: outputs/reward_models/<kind>)")
    p.add_argument("--backbone", default="minilm", help="minilm, smollm2, a local folder or a cached HF id")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of instructions held out (0: none)")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--gradient-accumulation-steps", type=int, default=1)
    p.add_argument("--max-length", type=int, default=384)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (+ the score head) through peft")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--margin", type=float, default=0.0, help="Bradley-Terry margin (rankings)")
    p.add_argument("--include-ties", action="store_true", help="train on ties too (rankings; excluded by default)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--report-to", default="none", help="none, tensorboard, wandb")
    p.add_argument("--resume", help="checkpoint folder to resume from, or 'latest'")
    p.add_argument("--no-checkpoints", action="store_true", help="do not save a checkpoint every epoch")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--logging-steps", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cli_train)

    s = subparsers.add_parser("score", help="score responses with a trained reward model")
    s.add_argument("--rm", required=True, help="reward model folder")
    s.add_argument("--data", required=True, help="AlpacaEval outputs .json, responses .csv, or .jsonl/.parquet")
    s.add_argument("--output", required=True, help=".jsonl, .parquet or .csv with a 'reward' column added")
    s.add_argument("--batch-size", type=int, default=32)
    s.set_defaults(func=_cli_score)


__all__ = [
    "KINDS", "RewardModel", "RewardModelError", "TrainConfig", "TrainResult", "bradley_terry_loss", "encode",
    "evaluate", "load_backbone", "load_tokenizer", "loss_history", "pairwise_accuracy", "prepare_rankings",
    "prepare_ratings", "ratings_agreement", "ratings_loss", "read_feedback", "reward_to_score", "score",
    "score_frame", "score_to_target", "split_by_instruction", "train_rankings_rm", "train_ratings_rm",
    "train_reward_model", "validation_instructions",
]
