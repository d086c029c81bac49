"""Scoring responses with a reward model, batched by a token budget.

Sequences are sorted by length and each batch is filled up to ``max_tokens`` tokens; decoder
backbones read the batch packed (no padding, attention within each sequence only), encoders
read it padded to its longest sequence. Results come back in input order.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .encoding import encode, pack_rows, pad_batch, token_batches
from .folder import RewardModel
from .forward import packable, packed_rewards, padded_rewards, row_tokens_for
from .objectives import _require_columns

GPU_MIN_TOKENS = 32768


def score(rm: RewardModel | os.PathLike | str, instructions: Sequence[str], responses: Sequence[str],
          batch_size: int = 32, inputs: Sequence[object] | None = None, progress: bool | None = None,
          pad_to_multiple_of: int | None = None, max_tokens: int | None = None,
          packing: bool | None = None) -> np.ndarray:
    """One reward (float) per response, in the order given.

    ``max_tokens`` is the token budget of a batch (default ``batch_size * rm.max_length``, at least
    ``GPU_MIN_TOKENS`` on a GPU);
    ``packing`` (default: whenever the backbone is a decoder) packs each batch into rows instead
    of padding it. ``rm`` may be a :class:`RewardModel` or its folder.
    """
    from tqdm.auto import tqdm

    from ..core.threads import set_torch_threads

    set_torch_threads()  # the cores this process really has (affinity, OMP_NUM_THREADS)
    if not isinstance(rm, RewardModel):
        rm = RewardModel.load(rm)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    ids = encode(rm.tokenizer, list(instructions), list(responses), rm.max_length, inputs)
    out = np.empty(len(ids), dtype=np.float64)
    if not ids:
        return out
    model, device = rm.model, rm.device
    packed = packable(model) if packing is None else bool(packing)
    budget = max_tokens or batch_size * rm.max_length
    if max_tokens is None and device.type == "cuda":
        budget = max(budget, GPU_MIN_TOKENS)  # inference keeps no activations: bigger batches, same memory class
    if pad_to_multiple_of is None and device.type == "cuda":
        pad_to_multiple_of = 8
    row_tokens = row_tokens_for(model, rm.max_length)
    batches = token_batches([len(x) for x in ids], budget, padded=not packed)
    was_training = model.training
    model.eval()
    show = progress if progress is not None else len(batches) > 4
    with torch.inference_mode():
        for idx in tqdm(batches, desc="scoring", disable=not show, leave=False):
            seqs = [ids[i] for i in idx]
            if packed:
                batch = pack_rows(seqs, rm.tokenizer.pad_token_id, row_tokens, pad_to_multiple_of)
                r = packed_rewards(model, {k: v.to(device, non_blocking=True) for k, v in batch.items()})
            else:
                batch = pad_batch(seqs, rm.tokenizer.pad_token_id, pad_to_multiple_of=pad_to_multiple_of)
                r = padded_rewards(model, {k: v.to(device, non_blocking=True) for k, v in batch.items()})
            out[idx] = r.float().cpu().numpy()
    model.train(was_training)
    return out


def score_frame(rm: RewardModel, df: pd.DataFrame, response_column: str = "response", batch_size: int = 32,
                progress: bool | None = None, max_tokens: int | None = None) -> np.ndarray:
    """Rewards for a table with ``instruction``, optional ``input`` and a response column."""
    _require_columns(df, ["instruction", response_column], "responses")
    inputs = df["input"].tolist() if "input" in df.columns else None
    return score(rm, df["instruction"].tolist(), df[response_column].tolist(), batch_size, inputs, progress,
                 max_tokens=max_tokens)
