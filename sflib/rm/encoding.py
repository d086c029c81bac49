"""Text -> tokens -> batches: what a reward model reads, and how it is batched.

The text is the Alpaca prompt (:func:`sflib.core.prompts.alpaca_prompt`, with or without input)
followed by the response, tokenised by :func:`encode` for training and scoring alike. When the
text is longer than ``max_length`` the *response is kept*: the prompt is cut in its middle (its
head and its ``### Response:`` tail survive) down to at most half the budget before the
response is cut at its end.

Batches are filled up to a token budget (:func:`token_batches`, length-sorted). Decoder
backbones read them *packed* (:func:`pack_rows`): several sequences share a row, each with its
own position ids (0, 1, ...), so attention never crosses a sequence boundary and no compute
goes to padding; encoders read them padded to the longest sequence of the batch
(:func:`pad_batch`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..core.prompts import alpaca_prompt
from .objectives import score_to_target


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



def token_batches(lengths: Sequence[int], max_tokens: int | None, *, padded: bool = False,
                  sequences_per_item: int = 1, max_items: int | None = None) -> list[list[int]]:
    """Item indices grouped into batches of at most ``max_tokens`` tokens (and ``max_items`` items), longest first.

    Packed batches count real tokens (the sum of ``lengths``); ``padded`` batches count
    ``items x sequences_per_item x longest`` (what padding to the longest costs). An item longer
    than the budget gets a batch of its own. ``max_tokens=None``: batches of ``max_items`` items.
    """
    if max_tokens is None and max_items is None:
        raise ValueError("give max_tokens, max_items or both")
    if (max_tokens is not None and max_tokens < 1) or (max_items is not None and max_items < 1):
        raise ValueError(f"max_tokens and max_items must be at least 1, not {max_tokens} / {max_items}")
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    batches, current, total, longest = [], [], 0, 0
    for i in order.tolist():
        n = int(lengths[i])
        cost = (len(current) + 1) * sequences_per_item * max(longest, n) if padded else total + n
        if current and ((max_tokens is not None and cost > max_tokens) or len(current) == max_items):
            batches.append(current)
            current, total, longest = [], 0, 0
        current.append(i)
        total, longest = total + n, max(longest, n)
    if current:
        batches.append(current)
    return batches


def pack_rows(sequences: Sequence[Sequence[int]], pad_id: int, row_tokens: int | None = None,
              pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """Pack sequences into rows of at most ``row_tokens`` tokens (first fit, longest first; one row when None).

    Returns ``input_ids`` and ``position_ids`` ``[rows, width]`` (positions restart at 0 for every
    sequence; the padding at a row's end is a segment of its own) and ``last_index`` ``[n]``: the
    flat index (``row * width + column``) of each sequence's last token, in the order given.
    """
    lengths = [len(s) for s in sequences]
    if not lengths or min(lengths) < 1:
        raise ValueError("pack_rows needs at least one sequence and no empty sequence")
    capacity = max(row_tokens or sum(lengths), max(lengths))
    rows: list[list[int]] = []
    fill: list[int] = []
    for i in sorted(range(len(sequences)), key=lambda i: -lengths[i]):
        for r, f in enumerate(fill):
            if f + lengths[i] <= capacity:
                break
        else:
            r = len(rows)
            rows.append([])
            fill.append(0)
        rows[r].append(i)
        fill[r] += lengths[i]
    width = max(fill)
    if pad_to_multiple_of:
        width = int(math.ceil(width / pad_to_multiple_of) * pad_to_multiple_of)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    last = torch.empty(len(sequences), dtype=torch.long)
    for r, members in enumerate(rows):
        offset = 0
        for i in members:
            n = lengths[i]
            ids[r, offset:offset + n] = torch.as_tensor(sequences[i], dtype=torch.long)
            pos[r, offset:offset + n] = torch.arange(n)
            last[i] = r * width + offset + n - 1
            offset += n
        if offset < width:
            pos[r, offset:] = torch.arange(width - offset)
    return {"input_ids": ids, "position_ids": pos, "last_index": last}


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
    """Tensors for one batch: padded to its longest sequence, or packed into rows (``packed``).

    Ratings batches give ``input_ids, attention_mask`` (padded) or ``input_ids, position_ids,
    last_index`` (packed), plus ``labels``; pair batches hold the preferred then the other
    responses (one forward pass) plus ``ties`` ``[B]``. ``features`` is a list of items, or a
    list holding one :class:`TokenBatches` batch.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    packed: bool = False
    row_tokens: int | None = None

    def _tensors(self, seqs):
        if self.packed:
            return pack_rows(seqs, self.pad_token_id, self.row_tokens, self.pad_to_multiple_of)
        return pad_batch(seqs, self.pad_token_id, pad_to_multiple_of=self.pad_to_multiple_of)

    def __call__(self, features: list) -> dict[str, torch.Tensor]:
        if len(features) == 1 and isinstance(features[0], list):
            features = features[0]
        if "labels" in features[0]:
            batch = self._tensors([f["input_ids"] for f in features])
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.float32)
            return batch
        seqs = [f["input_ids_preferred"] for f in features] + [f["input_ids_other"] for f in features]
        batch = self._tensors(seqs)
        batch["ties"] = torch.tensor([f["tie"] for f in features], dtype=torch.bool)
        return batch


class TokenBatches(torch.utils.data.Dataset):
    """A :class:`RatingsDataset` or :class:`PairsDataset` grouped into length-sorted batches of at most
    ``max_tokens`` tokens (a pair counts both of its sequences) or ``max_items`` examples: item ``i`` is batch ``i``.

    The Trainer draws these batches (``per_device_train_batch_size=1``) in a random order every
    epoch; :class:`RewardCollator` turns one into tensors.
    """

    def __init__(self, dataset, max_tokens: int | None, packed: bool, max_items: int | None = None):
        self.dataset = dataset
        if isinstance(dataset, PairsDataset):
            lengths = ([len(a) + len(b) for a, b in zip(dataset.preferred, dataset.other)] if packed
                       else dataset.lengths)
            per_item = 1 if packed else 2
        else:
            lengths, per_item = dataset.lengths, 1
        self.batches = token_batches(lengths, max_tokens, padded=not packed, sequences_per_item=per_item,
                                     max_items=max_items)
        self.tokens = sum(len(x) for x in dataset.ids) if isinstance(dataset, RatingsDataset) else \
            sum(len(a) + len(b) for a, b in zip(dataset.preferred, dataset.other))

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return [self.dataset[j] for j in self.batches[i]]
