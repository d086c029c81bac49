"""The reward-model folder and the backbones it is built on.

A trained reward model is a folder: the weights (or LoRA adapter + score head), the tokenizer and
``reward_model.json`` recording the kind, the prompt format (:data:`sflib.core.prompts.PROMPT_FORMAT`),
the backbone, ``max_length`` and the batching path it was trained with (``packing``:
``packed`` for decoders, ``padded`` for encoders); :meth:`RewardModel.load` refuses a folder
whose prompt format differs from the current one.
"""
from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.data import atomic_write_text
from ..core.prompts import PROMPT_FORMAT

META_NAME = "reward_model.json"
TRUNCATION = "keep-response-v1"
log = logging.getLogger("sflib.rm")


class RewardModelError(ValueError):
    """A reward model cannot be trained or used as asked (bad backbone, tokenizer, data or folder)."""


def attention_implementation(attention: str | None = "auto") -> str | None:
    """The attention kernel to load a backbone with: ``flash_attention_2`` where flash-attn is installed
    (and a GPU is present), otherwise PyTorch ``sdpa``; any other value is passed through."""
    if attention in (None, "auto"):
        if torch.cuda.is_available():
            try:
                import flash_attn  # noqa: F401

                return "flash_attention_2"
            except ImportError:
                pass
        return "sdpa"
    return attention


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
    from ..generation.models import resolve

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


def load_backbone(backbone: str, tokenizer, dtype: torch.dtype | None = None, attention: str | None = None):
    """``AutoModelForSequenceClassification`` with one output; a clear error when there is no such head.

    ``attention``: ``"auto"`` (see :func:`attention_implementation`), ``"sdpa"``, ``"flex_attention"``,
    ``"flash_attention_2"``, ``"eager"``; None keeps transformers' default.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from ..generation.models import resolve

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
    if attention is not None:
        kwargs["attn_implementation"] = attention_implementation(attention)
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
             dtype: torch.dtype | None = None, kind: str | None = None, merge_lora: bool = False,
             attention: str | None = None) -> "RewardModel":
        """Load a folder written by :meth:`save`, checking its prompt format (and ``kind`` when given).

        A LoRA reward model loads its backbone (recorded in the metadata) and then the adapter with
        its score head; ``merge_lora`` folds the adapter into the weights for faster scoring;
        ``attention`` picks the attention kernel (see :func:`load_backbone`).
        """
        from transformers import AutoModelForSequenceClassification

        path = Path(path)
        meta_path = path / META_NAME
        if not meta_path.exists():
            raise RewardModelError(f"{path} is not a reward model folder: it has no {META_NAME} (train one with "
                                   "`python -m sflib train-rm` or sflib.rm.train_reward_model)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("prompt_format") != PROMPT_FORMAT:
            raise RewardModelError(f"{path} was trained with prompt format {meta.get('prompt_format')!r} but this "
                                   f"sflib formats prompts as {PROMPT_FORMAT!r}; retrain it or use a matching sflib")
        if kind is not None and meta.get("kind") != kind:
            raise RewardModelError(f"{path} is a {meta.get('kind')} reward model, not a {kind} one")
        tok = load_tokenizer(str(path))
        if meta.get("lora"):
            from peft import PeftModel

            base = load_backbone(meta["backbone"], tok, dtype=dtype, attention=attention)
            with _quiet_transformers():
                model = PeftModel.from_pretrained(base, str(path))
            if merge_lora:
                model = model.merge_and_unload()
        else:
            kwargs = {"dtype": dtype} if dtype is not None else {}
            if attention is not None:
                kwargs["attn_implementation"] = attention_implementation(attention)
            model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model.to(device).eval()
        return cls(model, tok, meta)
