"""Sampling from a local ``transformers`` causal LM (:func:`generate_local`): the per-row sampler,
loading the policy, and the JSONL file of finished samples that makes a run resumable.

See :mod:`sflib.generation.generate` for the reproducibility and resume rules; the shared pieces (ids,
seeds, prompts, the responses table) come from there.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import pandas as pd

from ..core.data import DataError
from .generate import (PROMPT_STYLES, _finish, build_prompt, generator_name, prepare_instructions, sample_seed)
from ..core.paths import outputs_dir
from ..core.prompts import PROMPT_FORMAT


def _sampler_class():
    """A logits processor that samples each row with its own ``torch.Generator``.

    It applies temperature and top-p, draws one token per row, and returns scores that are 0 for
    the drawn token and -inf elsewhere, so ``generate`` in greedy mode emits exactly the draws.
    This is what makes each sample independent of the batch it ran in.
    """
    import torch
    from transformers import LogitsProcessor

    class PerRowSampler(LogitsProcessor):
        def __init__(self, seeds: list[int], temperature: float, top_p: float):
            self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
            self.temperature, self.top_p = temperature, top_p

        def __call__(self, input_ids, scores):
            scores = scores.float()
            if self.temperature <= 0:  # greedy decoding
                return scores
            probs = (scores / self.temperature).softmax(dim=-1)
            # one uniform number per row, from that row's own generator
            u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in self.generators]).to(scores.device)
            if self.top_p >= 1.0:
                vals, idx = probs, None
            else:
                # Top-p needs the most likely tokens in order; the top 256 nearly always hold the
                # nucleus, which is far cheaper than sorting the vocabulary (the fallback).
                vals, idx = probs.topk(min(256, probs.shape[-1]), dim=-1)
                if bool((vals.sum(dim=-1) < self.top_p).any()):
                    vals, idx = torch.sort(probs, dim=-1, descending=True)
                # keep each token whose better-ranked tokens hold less than top_p of the mass
                vals = vals.double().masked_fill((vals.cumsum(dim=-1) - vals) >= self.top_p, 0.0)
            cum = vals.double().cumsum(dim=-1)
            j = torch.searchsorted(cum, (u * cum[:, -1]).unsqueeze(1), right=True).clamp_(max=cum.shape[-1] - 1)
            tokens = j if idx is None else idx.gather(1, j)
            out = torch.full_like(scores, float("-inf"))
            return out.scatter_(1, tokens, 0.0)

    return PerRowSampler


def load_policy(model: str = "smollm2", dtype=None, device: str | None = None):
    """Load a causal LM and its tokenizer (left padding, a pad token) for sampling.

    ``device``: None = the GPU when there is one, else the CPU. ``dtype``: None = bfloat16 on a GPU
    that supports it, else float32.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..core.threads import set_torch_threads
    from .models import resolve

    set_torch_threads()  # the cores this process really has (affinity, OMP_NUM_THREADS)

    path = resolve(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    lm.eval()
    return lm, tokenizer


def store_path_for(generator: str, params: dict) -> Path:
    """The default JSONL file that holds the finished samples of a run with these parameters."""
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in generator)
    return outputs_dir() / "generations" / f"{safe}-{key}.jsonl"


def _read_store(path: Path) -> dict[tuple[str, int], dict]:
    """Finished samples from a run's JSONL file; a torn last line (killed mid-write) is ignored."""
    done: dict[tuple[str, int], dict] = {}
    if not path.exists():
        return done
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines) and not text.endswith("\n"):
                warnings.warn(f"{path}: dropping a half-written last line (an interrupted run); that sample is "
                              f"generated again", stacklevel=3)
                with open(path, "r+b") as f:  # cut it off so that appending starts on a fresh line
                    f.truncate(len(text[: len(text) - len(line)].encode("utf-8")))
                continue
            raise DataError(path, "malformed JSON line in the generation store; delete the file to start over",
                            row=n) from None
        done[(rec["instruction_id"], int(rec["sample"]))] = rec
    return done


def generate_local(instructions: pd.DataFrame, model: str = "smollm2", k: int = 5, temperature: float = 1.0,
                   top_p: float = 0.9, max_new_tokens: int = 128, batch_size: int = 8, seed: int = 0,
                   prompt_style: str = "chat", *, generator: str | None = None,
                   store: os.PathLike | str | None | bool = None, policy=None, device: str | None = None,
                   progress: bool = True) -> pd.DataFrame:
    """Sample ``k`` responses per instruction from a local causal LM.

    ``instructions``: a frame with ``instruction`` and optionally ``input``, ``id`` and ``source``.
    ``model``: "smollm2" (bundled) or a Hugging Face causal-LM folder / cached id.
    ``batch_size``: sequences per forward pass (samples of several instructions share a batch).
    ``store``: the JSONL file finished samples are appended to (None: a file under
    ``outputs/generations`` named by generator and parameters; False: keep nothing on disk).
    ``policy``: an already loaded ``(model, tokenizer)`` pair (skips loading; the default store is
    still named after ``model``, so pass ``generator`` or ``store`` for another model); ``device``:
    where to load the model (None: the GPU when there is one, in bfloat16 where supported).

    Returns the canonical responses table (``instruction_id, response_id, instruction, input,
    response, generator, params``) plus ``sample, n_tokens, finish_reason, source``, ordered by
    instruction then sample. ``params`` is the JSON of the sampling parameters and seed.
    """
    import torch
    from tqdm.auto import tqdm

    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if prompt_style not in PROMPT_STYLES:
        raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
    instr = prepare_instructions(instructions)
    generator = generator or generator_name(model)
    params = {"model": str(model), "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens,
              "seed": seed, "prompt_style": prompt_style,
              "prompt_format": PROMPT_FORMAT if prompt_style == "alpaca" else "chat-template"}
    store_file = None if store is False else Path(store) if store not in (None, True) else store_path_for(generator, params)
    done = _read_store(store_file) if store_file is not None else {}
    wanted = {(iid, s) for iid in instr["instruction_id"] for s in range(k)}
    todo = [(iid, s) for iid in instr["instruction_id"] for s in range(k) if (iid, s) not in done]
    rows = [dict(rec) for key, rec in done.items() if key in wanted]

    if todo:
        lm, tok = policy if policy is not None else load_policy(model, device=device)
        device = getattr(lm, "device", "cpu")
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        by_id = instr.set_index("instruction_id")
        prompts = {iid: build_prompt(tok, by_id.at[iid, "instruction"], by_id.at[iid, "input"], prompt_style)
                   for iid in dict.fromkeys(i for i, _ in todo)}
        add_special = prompt_style != "chat"  # the chat template already has its special tokens
        lengths = {iid: len(tok(p, add_special_tokens=add_special)["input_ids"]) for iid, p in prompts.items()}
        todo.sort(key=lambda item: lengths[item[0]])  # similar lengths together: less padding
        Sampler = _sampler_class()
        eos = lm.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [tok.eos_token_id])
        gen_config = lm.generation_config.__class__.from_dict(lm.generation_config.to_dict())
        gen_config.do_sample, gen_config.temperature, gen_config.top_p, gen_config.top_k = False, None, None, None
        gen_config.num_beams, gen_config.num_return_sequences = 1, 1
        gen_config.max_new_tokens, gen_config.max_length = max_new_tokens, None
        gen_config.pad_token_id = tok.pad_token_id
        fh = None
        if store_file is not None:
            store_file.parent.mkdir(parents=True, exist_ok=True)
            fh = open(store_file, "a", encoding="utf-8")
        try:
            bar = tqdm(total=len(todo), desc=f"sampling {generator}", unit="sample", disable=not progress)
            for start in range(0, len(todo), batch_size):
                batch = todo[start:start + batch_size]
                enc = tok([prompts[iid] for iid, _ in batch], return_tensors="pt", padding=True,
                          add_special_tokens=add_special)
                enc = {key: value.to(device) for key, value in enc.items()}
                sampler = Sampler([sample_seed(seed, iid, s) for iid, s in batch], temperature, top_p)
                with torch.inference_mode():
                    out = lm.generate(**enc, generation_config=gen_config, logits_processor=[sampler])
                new = out[:, enc["input_ids"].shape[1]:]
                lines = []
                for (iid, s), ids in zip(batch, new.tolist()):
                    n_tokens, finish = len(ids), "length"
                    for j, t in enumerate(ids):
                        if t in eos_ids:
                            n_tokens, finish = j, "stop"
                            break
                    text = tok.decode(ids[:n_tokens], skip_special_tokens=True).strip()
                    rec = {"instruction_id": iid, "sample": s, "response": text, "n_tokens": n_tokens,
                           "finish_reason": finish}
                    rows.append(rec)
                    lines.append(json.dumps(rec, ensure_ascii=False))
                if fh is not None:
                    fh.write("\n".join(lines) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                bar.update(len(batch))
            bar.close()
        finally:
            if fh is not None:
                fh.close()
    return _finish(rows, instr, generator, params)


# ----------------------------------------------------------------------------- OpenAI-compatible
