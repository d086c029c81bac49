"""Reward models trained on ratings or on rankings, on any Hugging Face backbone (stage 05).

One module per concern, data flowing forward:

- :mod:`.objectives` — the two losses (ratings regression, Bradley–Terry with ties/margin), the
  feedback tables they train on and the split by instruction;
- :mod:`.encoding` — text -> tokens (the Alpaca prompt + response, response kept on truncation),
  token-budget batches, packing into rows, padding, datasets and the collator;
- :mod:`.folder` — backbones, tokenizers and the reward-model folder (:class:`RewardModel`);
- :mod:`.forward` — one forward pass over a packed or a padded batch;
- :mod:`.scoring` — :func:`score` / :func:`score_frame`;
- :mod:`.training` — :func:`train_reward_model` on the Hugging Face Trainer;
- :mod:`.metrics` — held-out pairwise accuracy, MSE and Spearman;
- :mod:`.cli` — ``train-rm`` and ``score``.

``sflib.rm`` re-exports all of it (the historical import path).
"""
from __future__ import annotations

from .encoding import (PairsDataset, RatingsDataset, RewardCollator, TokenBatches, encode, pack_rows, pad_batch,
                       rm_text, token_batches)
from .folder import (META_NAME, TRUNCATION, RewardModel, RewardModelError, attention_implementation, auto_precision,
                     load_backbone, load_tokenizer)
from .forward import packable, packed_rewards, padded_rewards, rewards
from .metrics import evaluate, pairwise_accuracy, ratings_agreement
from .objectives import (KINDS, bradley_terry_loss, instruction_ids, prepare_rankings, prepare_ratings, ratings_loss,
                         reward_to_score, score_to_target, split_by_instruction, validation_instructions)
from .scoring import score, score_frame
from .training import (TrainConfig, TrainResult, loss_history, train_rankings_rm, train_ratings_rm,
                       train_reward_model)
from .cli import add_cli, read_feedback, read_responses

__all__ = [
    "KINDS", "META_NAME", "TRUNCATION", "PairsDataset", "RatingsDataset", "RewardCollator", "RewardModel",
    "RewardModelError", "TokenBatches", "TrainConfig", "TrainResult", "add_cli", "attention_implementation",
    "auto_precision", "bradley_terry_loss", "encode", "evaluate", "instruction_ids", "load_backbone", "load_tokenizer",
    "loss_history",
    "pack_rows", "packable", "packed_rewards", "pad_batch", "padded_rewards", "pairwise_accuracy", "prepare_rankings",
    "prepare_ratings", "ratings_agreement", "ratings_loss", "read_feedback", "read_responses", "reward_to_score",
    "rewards", "rm_text", "score", "score_frame", "score_to_target", "split_by_instruction", "token_batches",
    "train_rankings_rm", "train_ratings_rm", "train_reward_model", "validation_instructions",
]
