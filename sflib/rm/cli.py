"""Reward-model files and command line: ``train-rm`` and ``score``.

Command line::

    python -m sflib train-rm --kind rankings --data feedback_rankings.csv --output outputs/reward_models/rankings
    python -m sflib score --rm outputs/reward_models/rankings --data model_outputs.json --output scored.jsonl

``--data`` is read by :mod:`sflib.io` (``--split`` for a saved dataset folder): feedback by the
ratings / rankings reader, responses to score by the responses reader (AlpacaEval outputs and the
generation JSON included; the scored table keeps the file's name for the response column). A bad
file is one message naming the file, row and field; the previous output is never replaced.

Several GPUs (one process per GPU; FSDP with the bundled accelerate config)::

    accelerate launch --config_file sflib/configs/accelerate/fsdp.yaml -m sflib train-rm --kind ratings \\
        --data ratings.jsonl --backbone meta-llama/Llama-3.2-1B --output outputs/reward_models/ratings
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from ..core.data import DataError
from ..io import add_input_options, read_input
from .folder import RewardModel
from .metrics import pairwise_accuracy, ratings_agreement
from .objectives import KINDS, split_by_instruction
from .scoring import score_frame
from .training import train_reward_model


def read_feedback(path: os.PathLike | str, kind: str, *, split: str | None = None) -> pd.DataFrame:
    """Ratings or rankings (``kind``) from any file :mod:`sflib.io` reads: the original headerless CSV,
    a canonical ``.jsonl`` / ``.parquet`` table, JSON, a saved dataset folder (``split``)."""
    from .. import io

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return io.read(kind, path, split=split)


def read_responses(path: os.PathLike | str, *, split: str | None = None) -> tuple[pd.DataFrame, str]:
    """Responses to score (:func:`sflib.io.read_responses`: column ``response``, one row per response)
    and the name the file gives that column (``response``, or ``output`` for AlpacaEval outputs), which
    the scored table keeps."""
    from .. import io

    df = io.read_responses(path, split=split)
    return df, _response_name(df)


def _response_name(df: pd.DataFrame) -> str:
    """The file's name for the ``response`` column of a table read by :mod:`sflib.io`."""
    return df.attrs.get("renamed", {}).get("response", "response")


def _check_scored_path(path: Path) -> None:
    """Refuse an output format :func:`sflib.io.write_table` cannot write before any scoring is done."""
    from ..io.write import TABLE_SUFFIXES

    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise DataError(path, f"unsupported output format '{path.suffix}' (use {', '.join(TABLE_SUFFIXES)})",
                        field="--output")


def _write_scored(df: pd.DataFrame, path: Path) -> None:
    """Write the scored table atomically; a file that holds data is never replaced by an empty table."""
    from .. import io

    io.write_table(df, path)


def _cli_train(args) -> int:
    from ..core import paths

    df = read_input(args, args.kind, flag="--data")
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
        gradient_checkpointing=args.gradient_checkpointing, tokens_per_batch=args.tokens_per_batch,
        packing=args.packing, attention=args.attention, compile=args.compile,
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
    output = Path(args.output)
    _check_scored_path(output)
    df = read_input(args, "responses", flag="--data")
    column = _response_name(df)
    rm = RewardModel.load(args.rm)
    df = df.copy()
    df["reward"] = score_frame(rm, df, "response", args.batch_size, progress=True, max_tokens=args.max_tokens)
    _write_scored(df.rename(columns={"response": column}), output)
    print(f"scored {len(df)} responses with {args.rm} ({rm.kind} RM) -> {args.output}")
    return 0


def add_cli(subparsers) -> None:
    """Register ``train-rm`` and ``score``."""
    p = subparsers.add_parser("train-rm", help="train a ratings or rankings reward model",
                              description="Train a reward model on ratings or rankings feedback. Several GPUs: "
                                          "accelerate launch "
                                          "--config_file sflib/configs/accelerate/fsdp.yaml -m sflib train-rm ...")
    p.add_argument("--kind", choices=KINDS, required=True)
    add_input_options(p, flag="--data", help="feedback (ratings or rankings): the original headerless CSV, "
                                              "a canonical .jsonl/.parquet table")
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
    p.add_argument("--tokens-per-batch", type=int, default=None,
                   help="token budget of a training step (default: --batch-size examples per step)")
    p.add_argument("--packing", default="auto", choices=["auto", "on", "off"],
                   help="pack sequences into rows without padding (auto: decoders yes, encoders no)")
    p.add_argument("--attention", default="auto",
                   help="auto (flash_attention_2 where installed, else sdpa), sdpa, flex_attention, eager")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--logging-steps", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cli_train)

    s = subparsers.add_parser("score", help="score responses with a trained reward model")
    s.add_argument("--rm", required=True, help="reward model folder")
    add_input_options(s, flag="--data", help="responses to score: AlpacaEval outputs (instruction, output), "
                                              "a generation JSON, a responses table")
    s.add_argument("--output", required=True, help=".jsonl, .parquet or .csv with a 'reward' column added")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--max-tokens", type=int, default=None, help="token budget of a batch (default: batch size x max length)")
    s.set_defaults(func=_cli_score)
