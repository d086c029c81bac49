"""A judge that runs a chat causal LM locally with ``transformers`` (offline, no API key).

``get_judge("local:smollm2")`` uses the bundled SmolLM2-135M-Instruct (see :mod:`sflib.generation.models`);
``local:<folder or cached HF id>`` any other chat model. Generation is greedy (deterministic, so
the annotation cache is exact), batched with left padding, and batches are formed from prompts of
similar length to waste little compute on padding.

SmolLM2-135M is far too small to judge well (it rates almost everything 1 and prefers the second
output): use it to exercise the pipeline offline, not for results.
"""
from __future__ import annotations

import threading
import time
from functools import lru_cache
from typing import Iterable, Iterator

from .base import Completion, Judge, Request

_LOAD_LOCK = threading.Lock()


@lru_cache(maxsize=2)
def _load(path: str, device: str | None, dtype: str | None):
    """Tokenizer and model for ``path``, loaded once per process (lazily: only when first asked)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs = {"dtype": getattr(torch, dtype)} if dtype else {}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    return tokenizer, model


class LocalJudge(Judge):
    """Greedy chat generation with a local ``transformers`` model.

    ``model``: an alias from :mod:`sflib.generation.models` (``smollm2``), a local folder, or a Hugging Face id
    already in the local cache. ``max_new_tokens`` bounds each reply (part of the cache key, as are
    the other decoding settings). ``batch_size`` prompts are generated together.
    """

    concurrency = 1

    def __init__(self, model: str = "smollm2", *, max_new_tokens: int = 64, batch_size: int = 8,
                 device: str | None = None, dtype: str | None = None, name: str | None = None):
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be at least 1")
        self.alias = str(model)
        self.model = self.alias
        self.name = name or f"local:{self.alias}"
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = int(batch_size)
        self.device, self.dtype = device, dtype
        self.params = {"max_new_tokens": self.max_new_tokens, "do_sample": False}

    def _components(self):
        from ..generation.models import resolve

        with _LOAD_LOCK:
            return _load(resolve(self.alias), self.device, self.dtype)

    def _prompt(self, tokenizer, request: Request) -> str:
        return tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)

    def complete(self, requests: Iterable[Request]) -> Iterator[tuple[int, Completion]]:
        import torch

        requests = list(requests)
        if not requests:
            return
        tokenizer, model = self._components()  # configuration errors (no model) raise here
        prompts = [self._prompt(tokenizer, r) for r in requests]
        lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: lengths[i])
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            t0 = time.perf_counter()
            try:
                enc = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True,
                                add_special_tokens=False).to(model.device)
                with torch.inference_mode():
                    out = model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                         pad_token_id=tokenizer.pad_token_id)
                new = out[:, enc["input_ids"].shape[1]:]
            except Exception as e:  # one bad batch fails its items, not the run
                for i in batch:
                    yield i, Completion(error=f"local generation failed: {type(e).__name__}: {e}")
                continue
            latency = (time.perf_counter() - t0) / len(batch)
            for row, i in enumerate(batch):
                ids = new[row].tolist()
                if tokenizer.eos_token_id is not None and tokenizer.eos_token_id in ids:
                    ids = ids[:ids.index(tokenizer.eos_token_id)]
                ids = [t for t in ids if t != tokenizer.pad_token_id]
                text = tokenizer.decode(ids, skip_special_tokens=True).strip()
                yield i, Completion(text=text, prompt_tokens=lengths[i], completion_tokens=len(ids),
                                    latency_s=latency)
