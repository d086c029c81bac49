"""One forward pass of a reward model over a batch: padded or packed.

Packed batches (:func:`sflib.rm.encoding.pack_rows`) go through the model's own forward with
``position_ids`` that restart at 0 for every sequence and no attention mask: transformers reads
the sequence boundaries from the positions and gives each sequence a causal block of its own
(flash-attention's variable-length kernels, flex attention's block mask, or a block-diagonal
SDPA mask, whichever the backbone was loaded with). The reward is the score head's output at
each sequence's last token, captured with a forward hook so wrappers (peft, FSDP, DDP,
``torch.compile``) keep working.
"""
from __future__ import annotations

import torch


def _inner(model):
    """The ``...ForSequenceClassification`` module under peft / DDP / FSDP / compile wrappers."""
    for _ in range(8):
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        else:
            break
    return model


def packable(model) -> bool:
    """Whether packed batches work for this model: a decoder with a ``score`` head (Llama, Mistral, Qwen, Gemma, ...)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    m = _inner(model)
    cfg = getattr(m, "config", None)
    return (cfg is not None and hasattr(m, "score") and cfg.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
            and not getattr(cfg, "is_encoder_decoder", False)
            and getattr(cfg, "_attn_implementation", "sdpa") in ("sdpa", "flash_attention_2", "flex_attention", "eager"))


def row_tokens_for(model, max_length: int) -> int | None:
    """Row width for packing: one row per batch with variable-length kernels (flash, flex); rows of
    ``max_length`` with SDPA / eager, whose block-diagonal mask costs ``width²`` per row."""
    impl = getattr(getattr(_inner(model), "config", None), "_attn_implementation", "sdpa")
    return None if impl in ("flash_attention_2", "flex_attention") else max_length


def _store_output(module, args, out):
    module._sflib_out = out


def _head_outputs(model, **inputs) -> torch.Tensor:
    """The score head's output at every token ``[rows, width, 1]``.

    A forward hook (registered once, so ``torch.compile`` sees the same module every step) keeps
    the head's output; it is released as soon as it is read.
    """
    head = _inner(model).score
    if not getattr(head, "_sflib_hooked", False):
        head.register_forward_hook(_store_output)
        head._sflib_hooked = True
    head._sflib_out = None
    model(**inputs, use_cache=False)
    out, head._sflib_out = head._sflib_out, None
    return out


def packed_rewards(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Rewards ``[n]`` for a packed batch (``input_ids``, ``position_ids``, ``last_index``)."""
    per_token = _head_outputs(model, input_ids=batch["input_ids"], position_ids=batch["position_ids"])
    return per_token.reshape(-1, per_token.shape[-1])[batch["last_index"], 0]


def padded_rewards(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Rewards ``[n]`` for a right-padded batch (``input_ids``, ``attention_mask``).

    Decoders read the reward at each sequence's last token, exactly as packed batches do (the
    pooling of transformers' own head would skip a final token equal to the pad token); encoders
    use their classifier's pooled output.
    """
    if packable(model):
        per_token = _head_outputs(model, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        last = batch["attention_mask"].sum(-1) - 1
        return per_token[torch.arange(per_token.shape[0], device=per_token.device), last, 0]
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0]


def rewards(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Rewards for a packed or a padded batch (told apart by ``last_index``)."""
    return packed_rewards(model, batch) if "last_index" in batch else padded_rewards(model, batch)
