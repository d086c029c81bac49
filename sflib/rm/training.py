"""Training a reward model on the Hugging Face ``Trainer``.

Batches are formed from length-sorted examples — filled up to a token budget
(``tokens_per_batch``, ``--tokens-per-batch``; a pair counts both sequences and is never split), or
``batch_size`` examples each when no budget is given — and drawn in a random order every epoch. Decoder backbones
(Llama, Mistral, Qwen, ...) train on
*packed* rows — no padding, per-sequence positions, attention kept within each sequence
(flash-attention's variable-length kernels where installed, otherwise PyTorch SDPA with a
block-diagonal mask, or ``attention="flex_attention"``) — and read the reward at each sequence's
last token; encoders (BERT-like, e.g. the bundled MiniLM) train on batches padded to their
longest sequence. ``reward_model.json`` records which path was used (``packing``).

On GPUs: bf16 (or fp16), fused AdamW, optional ``torch.compile``; for 7B backbones, LoRA
(``peft``; the score head is trained and saved with the adapter) and gradient checkpointing;
across GPUs, ``accelerate launch`` with ``sflib/configs/accelerate/fsdp.yaml`` (see
docs/reward_models.md). Logging, a checkpoint every epoch, resume and ``report_to``
(none / tensorboard / wandb) come from the Trainer; the Trainer subclass itself, with its losses and
the accuracy / margin it logs, is :class:`sflib.rm.trainer.RewardTrainer`.
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .. import __version__
from ..core.prompts import PROMPT_FORMAT
from ..core.threads import set_torch_threads
from .encoding import PairsDataset, RatingsDataset, RewardCollator, TokenBatches, encode
from .folder import (TRUNCATION, RewardModel, RewardModelError, _quiet_transformers, auto_precision, load_backbone,
                     load_tokenizer)
from .forward import packable, row_tokens_for
from .objectives import KINDS, prepare


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
    progress: bool = True
    tokens_per_batch: int | None = None  # token budget of a step; None: batch_size examples per step
    packing: str = "auto"  # auto (decoders packed, encoders padded), on, off
    attention: str = "auto"  # auto (flash_attention_2 where installed, else sdpa), sdpa, flex_attention, eager
    compile: bool = False  # torch.compile the model (through the Trainer)


@dataclass
class TrainResult:
    """What :func:`train_reward_model` returns: the reward model, the Trainer and the data counts."""

    rm: RewardModel
    trainer: Any
    counts: dict
    log_history: list[dict] = field(default_factory=list)


def _dataset(kind: str, df: pd.DataFrame, tokenizer, max_length: int):
    if kind == "ratings":
        return RatingsDataset(encode(tokenizer, df["instruction"].tolist(), df["response"].tolist(), max_length,
                                     df["input"].tolist()), df["score"].tolist())
    instr, inp = df["instruction"].tolist(), df["input"].tolist()
    return PairsDataset(encode(tokenizer, instr, df["preferred"].tolist(), max_length, inp),
                        encode(tokenizer, instr, df["other"].tolist(), max_length, inp), df["tie"].tolist())


def _check_config(kind: str, config: TrainConfig) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if config.packing not in ("auto", "on", "off"):
        raise ValueError(f"packing must be auto, on or off, not {config.packing!r}")
    if config.tokens_per_batch is not None and config.tokens_per_batch < 1:
        raise ValueError(f"tokens_per_batch must be at least 1, not {config.tokens_per_batch}")


def complete_checkpoints(checkpoints: os.PathLike | str) -> list[Path]:
    """The checkpoint folders under ``checkpoints`` that were saved to the end (the Trainer writes
    ``trainer_state.json`` last), oldest step first. A folder cut off mid-save (Ctrl-C, a killed job) is not one."""
    found = [p for p in Path(checkpoints).glob("checkpoint-*")
             if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def drop_incomplete_checkpoints(checkpoints: os.PathLike | str) -> list[Path]:
    """Delete the checkpoint folders cut off mid-save, so that neither ``--resume latest`` nor the Trainer's
    rotation takes one for a checkpoint; returns what was deleted."""
    import shutil

    complete = set(complete_checkpoints(checkpoints))
    dropped = [p for p in Path(checkpoints).glob("checkpoint-*") if p.is_dir() and p not in complete]
    for path in dropped:
        shutil.rmtree(path, ignore_errors=True)
    return dropped


def _resume_point(resume_from_checkpoint: str | bool | None, checkpoints: Path) -> str | None:
    """``True`` -> the last checkpoint saved to the end (the Trainer's own "latest" would take a folder cut off
    mid-save); a folder is checked to be complete."""
    if resume_from_checkpoint is None or resume_from_checkpoint is False:
        return None
    if resume_from_checkpoint is True:
        drop_incomplete_checkpoints(checkpoints)
        found = complete_checkpoints(checkpoints)
        if not found:
            raise RewardModelError(f"--resume latest: no complete checkpoint in {checkpoints} to resume from; "
                                   "train without --resume")
        return str(found[-1])
    folder = Path(resume_from_checkpoint)
    if not (folder / "trainer_state.json").is_file():
        raise RewardModelError(f"--resume {folder}: not a complete checkpoint (no trainer_state.json there; "
                               "it may have been cut off mid-save); use --resume latest")
    return str(folder)


def train_reward_model(kind: str, train: pd.DataFrame, output_dir: os.PathLike | str, *,
                       eval: pd.DataFrame | None = None, config: TrainConfig | None = None,
                       resume_from_checkpoint: str | bool | None = None, **overrides) -> TrainResult:
    """Train a ``"ratings"`` or ``"rankings"`` reward model and save it to ``output_dir``.

    ``train`` / ``eval`` are canonical ratings (``instruction, input, response, score``) or rankings
    (``instruction, input, response1, response2, decision``) tables. Settings come from ``config``
    with keyword ``overrides`` (any :class:`TrainConfig` field). Checkpoints (one per epoch) go to
    ``output_dir/checkpoints`` (none, and no such folder, with ``save_checkpoints=False``);
    ``resume_from_checkpoint`` is a checkpoint folder, or ``True`` for the latest one there. Every
    data, tokenizer and backbone problem is raised before training.
    """
    from transformers import TrainingArguments, set_seed

    config = config or TrainConfig()
    unknown = set(overrides) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise TypeError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    config = TrainConfig(**{**asdict(config), **overrides})
    _check_config(kind, config)
    output_dir = Path(output_dir)
    threads = set_torch_threads()  # the cores this process really has (affinity, OMP_NUM_THREADS, processes per node)

    # 1. data (cheap checks first)
    train_df, counts = prepare(kind, train, config.ties)
    if counts["used"] == 0:
        detail = (f"{counts['without_score']} of {counts['rows']} rows have no score" if kind == "ratings" else
                  f"{counts['rows']} rows: {counts['ties_excluded']} ties excluded, "
                  f"{counts['without_decision']} without a decision")
        raise RewardModelError(f"no {kind} training examples left after filtering ({detail}); "
                               + ("include ties (ties='include') or " if kind == "rankings" else "") + "add feedback")
    eval_df, eval_counts = (None, None)
    if eval is not None and len(eval):
        eval_df, eval_counts = prepare(kind, eval, config.ties)
        if eval_counts["used"] == 0:
            warnings.warn(f"the {kind} validation set is empty after filtering; training without an eval loss")
            eval_df = None
    counts = {"train": counts, "eval": eval_counts}

    # 2. tokenizer and backbone
    set_seed(config.seed)
    tokenizer = load_tokenizer(config.backbone)
    precision = auto_precision(config.precision)
    model = load_backbone(config.backbone, tokenizer, attention=config.attention)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and config.max_length > limit:
        raise RewardModelError(f"max_length={config.max_length} is longer than {config.backbone!r} supports "
                               f"({limit} positions); use --max-length {limit} or less")
    packed = packable(model) if config.packing == "auto" else config.packing == "on"
    if packed and not packable(model):
        raise RewardModelError(f"{config.backbone!r} ({model.config.model_type}) cannot read packed batches; "
                               "use packing='off' (padded batches)")
    if config.lora:
        from peft import LoraConfig, TaskType, get_peft_model

        lora_config = LoraConfig(task_type=TaskType.SEQ_CLS, r=config.lora_r, lora_alpha=config.lora_alpha,
                                 lora_dropout=config.lora_dropout, target_modules=config.lora_target_modules)
        model = get_peft_model(model, lora_config)  # SEQ_CLS keeps the score head trainable (modules_to_save)
    if config.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 renamed it
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()

    # 3. data -> tokens -> token-budget batches
    on_gpu = torch.cuda.is_available()
    budget = config.tokens_per_batch  # None: batch_size examples per batch
    train_ds = TokenBatches(_dataset(kind, train_df, tokenizer, config.max_length), budget, packed,
                            max_items=None if budget else config.batch_size)
    eval_ds = (TokenBatches(_dataset(kind, eval_df, tokenizer, config.max_length), budget, packed,
                            max_items=None if budget else config.eval_batch_size)
               if eval_df is not None else None)
    lr = config.learning_rate if config.learning_rate is not None else (2e-4 if config.lora else 5e-5)
    checkpoints = output_dir / "checkpoints"
    had_checkpoints = checkpoints.exists()
    resume_from_checkpoint = _resume_point(resume_from_checkpoint, checkpoints)
    args = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs, max_steps=config.max_steps,
        per_device_train_batch_size=1, per_device_eval_batch_size=1,  # one token-budget batch per step
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=lr, weight_decay=config.weight_decay, warmup_steps=config.warmup_ratio,  # float < 1: a ratio
        lr_scheduler_type="linear", optim="adamw_torch_fused" if on_gpu else "adamw_torch",
        bf16=precision == "bf16", fp16=precision == "fp16", torch_compile=config.compile,
        logging_strategy="steps", logging_steps=config.logging_steps, logging_first_step=True,
        eval_strategy="epoch" if eval_ds is not None else "no",
        save_strategy="epoch" if config.save_checkpoints else "no", save_total_limit=config.save_total_limit,
        report_to=config.report_to, seed=config.seed,
        remove_unused_columns=False, label_names=["labels"] if kind == "ratings" else ["ties"],
        dataloader_num_workers=0, disable_tqdm=not config.progress, use_cpu=not on_gpu,
    )
    collator = RewardCollator(tokenizer.pad_token_id, 8 if on_gpu else None, packed=packed,
                              row_tokens=row_tokens_for(model, config.max_length) if packed else None)
    from .trainer import RewardTrainer

    trainer = RewardTrainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
        data_collator=collator, kind=kind, margin=config.margin,
    )
    if not config.progress:  # without tqdm the Trainer prints every log dict; the history stays in state.log_history
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    started = time.time()
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    if not config.progress:
        hf_logging.disable_progress_bar()  # no "writing shards" bars for every checkpoint
    try:
        trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    except KeyboardInterrupt:
        drop_incomplete_checkpoints(checkpoints)  # a save cut off by Ctrl-C is not a checkpoint
        raise
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        if not config.save_checkpoints and not had_checkpoints and checkpoints.is_dir() \
                and not any(checkpoints.iterdir()):
            checkpoints.rmdir()  # the Trainer creates its output_dir even when it saves nothing there
    seconds = time.time() - started

    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    meta = {
        "format": "sflib-reward-model", "version": 1, "kind": kind, "prompt_format": PROMPT_FORMAT,
        "truncation": TRUNCATION, "backbone": config.backbone, "lora": config.lora, "max_length": config.max_length,
        "objective": ("mse(sigmoid(reward), (score-1)/6)" if kind == "ratings"
                      else f"bradley-terry (margin {config.margin}, ties {config.ties})"),
        "packing": "packed" if packed else "padded",
        "attention": getattr(getattr(unwrapped, "config", None), "_attn_implementation", None),
        "tokens_per_batch": budget, "train_tokens_per_epoch": train_ds.tokens, "train_batches_per_epoch": len(train_ds),
        "counts": counts, "config": asdict(config), "precision": precision,
        "train_seconds": round(seconds, 1), "sflib_version": __version__,
        "processes": trainer.accelerator.num_processes, "torch_threads_per_process": threads,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
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
