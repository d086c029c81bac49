"""Stage 2 — sample k responses per instruction from a policy.

Two policies, one output layout (``sflib.data``'s canonical responses plus ``sample``,
``n_tokens`` and ``finish_reason``):

- :func:`generate_local` — a local ``transformers`` causal LM (the bundled SmolLM2-135M-Instruct
  by default, or any Hugging Face causal-LM folder / cached id). Batched, left-padded sampling with
  temperature / top-p / max-new-tokens and the model's chat template or the Alpaca prompt.
- :func:`generate_openai` — any OpenAI-compatible server (``vllm serve``, llama.cpp, OpenAI)
  through the same engine as the judges (:func:`sflib.annotate.annotate` with an
  :class:`~sflib.judges.openai_judge.OpenAIJudge` configured with sampling parameters): bounded
  concurrency, retries, and the annotation store, so a re-run resumes and pays nothing twice.

Reproducibility (local): sample ``s`` of an instruction is drawn with its own random generator
seeded by ``hash(hash(seed, instruction_id), s)``. The samples therefore do not depend on which
other instructions are in the run, on the batch size, or on ``k`` (a run with ``k=8`` starts with
the same 4 samples as a run with ``k=4``), so a subset run reproduces the same samples.
(Batches mix prompts of different lengths with left padding; a last-bit floating-point difference
could in principle flip one token, but the random draws themselves are per sample.)

Resume (local): every finished sample is appended to a JSONL file under
``outputs/generations/`` named after the generator and a hash of the sampling parameters; a
killed run picks up where it stopped, and a later run with the same parameters (on the same or a
subset of the instructions) reads its samples from there instead of generating them again.

Empty outputs are kept (with their ``finish_reason``) and counted in a warning.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import warnings
from pathlib import Path

import pandas as pd

from .data import (RESPONSE_COLUMNS, DataError, clean_input, make_id, make_response_id, write_generations,
                   write_table)
from .paths import outputs_dir
from .prompts import PROMPT_FORMAT, alpaca_prompt

PROMPT_STYLES = ("chat", "alpaca")
#: extra columns of a responses table written here (after the canonical ones)
EXTRA_COLUMNS = ["sample", "n_tokens", "finish_reason"]
GENERATION_TEMPLATE_VERSION = "generate-v1"


# ----------------------------------------------------------------------------- helpers

def _int_hash(*parts: object) -> int:
    """A non-negative 63-bit integer from the parts (stable across runs and machines)."""
    text = "\x1f".join(str(p) for p in parts)
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:15], 16)


def instruction_seed(seed: int, instruction_id: str) -> int:
    """The seed of one instruction: ``hash(seed, instruction_id)``."""
    return _int_hash("instruction", seed, instruction_id)


def sample_seed(seed: int, instruction_id: str, sample: int) -> int:
    """The seed of sample ``sample`` of an instruction, derived from :func:`instruction_seed`."""
    return _int_hash("sample", instruction_seed(seed, instruction_id), sample)


def prepare_instructions(instructions: pd.DataFrame) -> pd.DataFrame:
    """Instructions with ``instruction_id`` (from ``id`` or computed), a clean ``input``, one row each.

    Accepts a canonical instructions table (``id, instruction, input, source``) or any frame with
    ``instruction`` (and optionally ``input``, ``id``/``instruction_id``, ``source``/``dataset``).
    Repeated instructions are dropped with a warning that gives the count.
    """
    if "instruction" not in instructions:
        raise DataError(None, f"instructions table has no 'instruction' column (columns: {', '.join(instructions.columns)})",
                        field="instruction")
    df = instructions.copy()
    df["input"] = [clean_input(x) for x in df["input"]] if "input" in df else ""
    blank = df["instruction"].astype(str).str.strip() == ""
    if blank.any():
        raise DataError(None, "instruction is empty", row=int(blank.values.argmax()) + 1, field="instruction")
    if "instruction_id" not in df:
        df["instruction_id"] = df["id"] if "id" in df else [make_id(i, x) for i, x in zip(df["instruction"], df["input"])]
    if "source" not in df:
        df["source"] = df["dataset"] if "dataset" in df else ""
    dup = df.duplicated("instruction_id")
    if dup.any():
        warnings.warn(f"{int(dup.sum())} repeated instruction(s) (same instruction and input) appear more than "
                      f"once; each is sampled once", stacklevel=3)
        df = df.loc[~dup]
    return df[["instruction_id", "instruction", "input", "source"]].reset_index(drop=True)


def pick_instructions(instructions: pd.DataFrame, n: int | None, seed: int = 0,
                      max_chars: int | None = None) -> pd.DataFrame:
    """A reproducible random sample of ``n`` instructions (all when ``n`` is None or too large).

    ``max_chars`` keeps only instructions whose instruction + input is at most that long (short
    prompts keep CPU runs quick); the count left out is reported in a warning.
    """
    df = instructions
    if max_chars is not None:
        length = df["instruction"].str.len() + df["input"].fillna("").astype(str).str.len()
        keep = length <= max_chars
        if not keep.all():
            warnings.warn(f"max_chars={max_chars}: {int((~keep).sum())} of {len(df)} instructions are longer and "
                          f"were not considered", stacklevel=2)
        df = df.loc[keep]
    if n is not None and n < len(df):
        df = df.sample(n=n, random_state=seed)
    return df.reset_index(drop=True)


def user_message(instruction: str, input: object = "") -> str:
    """The user turn for a chat-template prompt: the instruction, then the input (if any)."""
    inp = clean_input(input)
    return f"{instruction}\n\n{inp}" if inp else instruction


def build_prompt(tokenizer, instruction: str, input: object = "", prompt_style: str = "chat") -> str:
    """The prompt text for one instruction: the model's chat template or the Alpaca prompt."""
    if prompt_style == "alpaca":
        return alpaca_prompt(instruction, input)
    if prompt_style != "chat":
        raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("this tokenizer has no chat template; use prompt_style='alpaca'")
    return tokenizer.apply_chat_template([{"role": "user", "content": user_message(instruction, input)}],
                                         tokenize=False, add_generation_prompt=True)


def generator_name(model: str) -> str:
    """A short generator name for a model alias or path (the folder name for a path)."""
    if str(model).lower() in ("smollm2", "smollm2-135m"):
        return "smollm2-135m-instruct"
    return Path(str(model).rstrip("/")).name or str(model)


def warn_empty(responses: pd.DataFrame, stacklevel: int = 3) -> int:
    """Warn (with counts) about empty responses; they are kept. Returns how many there are."""
    empty = responses["response"].fillna("").astype(str).str.strip() == ""
    n = int(empty.sum())
    if n:
        n_inst = responses.loc[empty, "instruction_id"].nunique()
        warnings.warn(f"{n} of {len(responses)} responses are empty (in {n_inst} of "
                      f"{responses['instruction_id'].nunique()} instructions); they are kept, marked by an empty "
                      f"'response'", stacklevel=stacklevel)
    return n


def _finish(rows: list[dict], instr: pd.DataFrame, generator: str, params: dict) -> pd.DataFrame:
    """Assemble the responses table in instruction order, then sample order."""
    if not rows:
        return pd.DataFrame(columns=RESPONSE_COLUMNS + EXTRA_COLUMNS + ["source"])
    got = pd.DataFrame(rows)
    df = instr.merge(got, on="instruction_id", how="inner")
    df["order"] = df["instruction_id"].map({iid: i for i, iid in enumerate(instr["instruction_id"])})
    df = df.sort_values(["order", "sample"]).drop(columns="order").reset_index(drop=True)
    df["response"] = df["response"].fillna("").astype(str)
    df["response_id"] = [make_response_id(i, r) for i, r in zip(df["instruction_id"], df["response"])]
    df["generator"] = generator
    df["params"] = json.dumps(params, sort_keys=True)
    df["sample"] = df["sample"].astype(int)
    cols = RESPONSE_COLUMNS + EXTRA_COLUMNS + ["source"]
    for c in cols:
        if c not in df:
            df[c] = None
    warn_empty(df, stacklevel=4)
    return df[cols]


def write_responses(responses: pd.DataFrame, path: os.PathLike | str,
                    generations_path: os.PathLike | str | None = None) -> list[Path]:
    """Write responses as a canonical table (``.jsonl``/``.parquet``) and, optionally, in the original
    generation JSON layout ``[{"instruction", "input", "responses": [...]}]``."""
    paths = [write_table(responses, path)]
    if generations_path is not None:
        paths.append(write_generations(responses, generations_path))
    return paths


# ----------------------------------------------------------------------------- local sampling

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

    from .models import resolve

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

def sampling_requests(instructions: pd.DataFrame, k: int, prompt_style: str = "chat", seed: int = 0):
    """One :class:`~sflib.judges.base.Request` per (instruction, sample); ``cache_salt`` = sample index.

    ``chat``: the user turn is the instruction (and input); ``alpaca``: the user turn is the Alpaca
    prompt. ``meta`` carries ``instruction_id``, ``sample`` and a per-sample ``seed`` (for judges
    that can pass it on; it is not part of the prompt).
    """
    from .judges.base import Request

    instr = prepare_instructions(instructions)
    requests = []
    for rec in instr.itertuples(index=False):
        content = alpaca_prompt(rec.instruction, rec.input) if prompt_style == "alpaca" else \
            user_message(rec.instruction, rec.input)
        for s in range(k):
            requests.append(Request(messages=[{"role": "user", "content": content}],
                                    meta={"kind": "generation", "instruction_id": rec.instruction_id, "sample": s,
                                          "cache_salt": f"sample={s}", "seed": sample_seed(seed, rec.instruction_id, s),
                                          "instruction": rec.instruction, "input": rec.input}))
    return instr, requests


def generate_openai(instructions: pd.DataFrame, judge, k: int = 5, *, store=None, prompt_style: str = "chat",
                    seed: int = 0, generator: str | None = None, progress: bool = True,
                    n_per_request: bool | None = False) -> pd.DataFrame:
    """Sample ``k`` responses per instruction from an OpenAI-compatible server.

    ``judge``: an :class:`~sflib.judges.openai_judge.OpenAIJudge` configured with the sampling
    parameters (``temperature``, ``max_tokens``, ``top_p=...``), a judge name such as
    ``"openai:Qwen/Qwen2.5-7B-Instruct"``, or any Judge. Its name and parameters are part of the
    cache key, and each sample has its own key (``cache_salt`` = sample index), so a re-run
    returns the stored samples and a crashed run resumes. ``store``: None (the default store
    ``outputs/annotations.sqlite``), False (keep nothing), a path, or an
    :class:`~sflib.store.AnnotationStore`.

    ``n_per_request``: ask for the missing samples of an instruction in one request with ``n``
    (vLLM, OpenAI: the prompt is sent and paid once; each choice is stored under its own sample
    key). None or True: whenever the judge supports it; a server that answers fewer choices than
    asked (llama.cpp) has the rest asked one request per sample. False (default for now): one
    request per sample.

    A request that failed (after the client's retries) is never turned into an empty response:
    the call raises an error with the count, and a re-run retries only the failures.
    """
    from .annotate import annotate
    from .judges import get_judge
    from .store import AnnotationStore

    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if prompt_style not in PROMPT_STYLES:
        raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
    judge = get_judge(judge)
    opened = False
    if store is False:
        store, opened = AnnotationStore(":memory:"), True  # keeps the n choices for this call only
    elif not isinstance(store, AnnotationStore):
        store, opened = AnnotationStore(Path(store) if store is not None else outputs_dir() / "annotations.sqlite"), True
    instr, requests = sampling_requests(instructions, k, prompt_style, seed)
    template = f"{GENERATION_TEMPLATE_VERSION}:{prompt_style}"
    pre = {"requests": 0, "samples": 0, "prompt_tokens": 0, "completion_tokens": 0}
    try:
        if n_per_request is not False and k > 1 and getattr(judge, "supports_n", False):
            pre = _sample_with_n(judge, requests, store, template, progress)
        result = annotate(judge, requests, store=store, template_version=template, parse=_parse_text,
                          desc=f"sampling {judge.name}", progress=progress).reset_index(drop=True)
    finally:
        if opened:
            store.close()
    failed = (result["status"] == "failed") | result["raw"].isna()
    if failed.any():
        errors = result.loc[failed, "error"].fillna("no text").astype(str).value_counts().head(3)
        raise RuntimeError(f"{int(failed.sum())} of {len(result)} sampling requests to {judge.name} failed; they "
                           f"are stored as failures and a re-run retries only them. Most common errors: "
                           f"{dict(errors)}")
    rows = [{"instruction_id": req.meta["instruction_id"], "sample": req.meta["sample"],
             "response": str(rec["raw"]).strip(), "n_tokens": rec["completion_tokens"], "finish_reason": None}
            for req, rec in zip(requests, result.to_dict("records"))]
    params = {"model": judge.model, **dict(judge.params or {}), "seed": seed, "prompt_style": prompt_style}
    out = _finish(rows, instr, generator or judge.name, params)
    stats = dict(result.attrs.get("stats", {}))
    stats["prompt_tokens"] = stats.get("prompt_tokens", 0) + pre["prompt_tokens"]
    stats["completion_tokens"] = stats.get("completion_tokens", 0) + pre["completion_tokens"]
    stats.update(n_requests=pre["requests"], n_samples=pre["samples"])
    out.attrs["stats"] = stats
    return out


def _sample_with_n(judge, requests: list, store, template: str, progress: bool) -> dict:
    """Ask each instruction's missing samples in one request with ``n``; store every choice under
    its sample's key (the prompt's tokens on the first choice: it was paid once). Samples a
    server did not return are left for :func:`annotate` to ask one by one."""
    from .annotate import request_key
    from .judges.base import Request

    keys = [request_key(judge, r, template) for r in requests]
    stored = store.get_many(keys)
    groups: dict[str, list[int]] = {}
    for i, (key, r) in enumerate(zip(keys, requests)):
        if stored.get(key, {}).get("status") != "ok":
            groups.setdefault(r.meta["instruction_id"], []).append(i)
    groups = {g: idx for g, idx in groups.items() if len(idx) > 1}
    spent = {"requests": len(groups), "samples": 0, "prompt_tokens": 0, "completion_tokens": 0}
    if not groups:
        return spent
    members = list(groups.values())
    asks = [Request(messages=requests[idx[0]].messages, params={"n": len(idx)},
                    meta={"kind": "generation", "n": len(idx)}) for idx in members]
    short = 0
    for g, completion in judge.complete(asks):
        texts = completion.texts or ([completion.text] if completion.ok else [])
        if not completion.ok or not texts:
            continue  # left missing: asked again one by one
        texts = texts[:len(members[g])]
        short += len(texts) < len(members[g])
        each, rest = divmod(completion.completion_tokens, len(texts))
        for j, text in enumerate(texts):
            i = members[g][j]
            tokens = (completion.prompt_tokens if j == 0 else 0, each + (rest if j == 0 else 0))
            store.put(keys[i], judge=judge.name, model=judge.model, template_version=template,
                      params=judge.params, messages=requests[i].messages,
                      meta={**requests[i].meta, "n_group": len(members[g]), "choice": j},
                      status="ok", raw=text, value=text, valid=True, prompt_tokens=tokens[0],
                      completion_tokens=tokens[1], latency_s=completion.latency_s,
                      attempts=completion.attempts)
            spent["samples"] += 1
        spent["prompt_tokens"] += completion.prompt_tokens
        spent["completion_tokens"] += completion.completion_tokens
    if short:
        import logging

        logging.getLogger(__name__).info("%s answered fewer choices than n for %d instructions; the rest are asked one "
                 "request per sample", judge.name, short)
    return spent


def _parse_text(text: str):
    """A sampling reply's value is its text; every reply that arrived is valid (empty ones included)."""
    return text, True


# ----------------------------------------------------------------------------- CLI

def add_cli(subparsers) -> None:
    from .judges.config import add_judge_options

    p = subparsers.add_parser(
        "generate", help="sample k responses per instruction (local transformers model or OpenAI-compatible server)",
        description="Sample k responses per instruction and write them as a canonical responses table "
                    "(.jsonl/.parquet) and in the original generation JSON layout. Sampling settings default "
                    "to the policy's config (sflib/configs/policies/ or ./policies/); the options below override it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--instructions", required=True, help="instructions file (.json/.jsonl/.csv/.parquet)")
    p.add_argument("--out", "--output", dest="out", required=True, help="responses table to write (.jsonl or .parquet)")
    p.add_argument("--generations-json", help="also write the original layout [{instruction, input, responses}]")
    p.add_argument("--n-instructions", type=int, help="a random sample of this many instructions (default: all)")
    p.add_argument("-k", "--k", dest="k", type=int, default=5, help="responses per instruction")
    p.add_argument("--policy", help="policy: a config name (smollm2, qwen2.5-7b-vllm, ./policies/NAME.yaml), a .yaml "
                                    "path, 'openai:<model>' (a server) or a local model folder (default: smollm2)")
    p.add_argument("--model", help="local model: 'smollm2' or a Hugging Face causal-LM folder (same as --policy)")
    p.add_argument("--openai-model", help="sample from an OpenAI-compatible server with this model name "
                                          "(same as --policy openai:MODEL)")
    p.add_argument("--base-url", help="server URL, e.g. http://localhost:8000/v1 for `vllm serve` (default: the "
                                      "policy's, else OpenAI)")
    add_judge_options(p, sampling=True)
    p.add_argument("--batch-size", type=int, help="sequences per forward pass (local only)")
    p.add_argument("--device", help="local model device, e.g. cuda or cpu (default: the GPU when there is one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompt-style", choices=PROMPT_STYLES, help="the model's chat template, or the Alpaca prompt "
                                                                 "(default: the policy's, else chat)")
    p.add_argument("--generator", help="generator name recorded with each response")
    p.add_argument("--store", help="local: JSONL of finished samples; server: annotation store (.sqlite)")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    from .data import read_instructions
    from .judges.config import judge_overrides
    from .policies import get_policy

    given = [o for o, v in (("--policy", args.policy), ("--model", args.model), ("--openai-model", args.openai_model))
             if v]
    if len(given) > 1:
        raise ValueError(f"give one of --policy, --model, --openai-model (got {', '.join(given)})")
    spec = args.policy or args.model or (f"openai:{args.openai_model}" if args.openai_model else "smollm2")
    overrides = dict(judge_overrides(args), base_url=args.base_url, batch_size=args.batch_size,
                     device=args.device, template=args.prompt_style)
    policy = get_policy(spec, **{k: v for k, v in overrides.items() if v is not None})
    instructions = pick_instructions(read_instructions(args.instructions), args.n_instructions, seed=args.seed)
    df = policy.generate(instructions, k=args.k, seed=args.seed, store=args.store, generator=args.generator)
    paths = write_responses(df, args.out, args.generations_json)
    print(f"{len(df)} responses for {df['instruction_id'].nunique()} instructions from {policy.name} -> "
          f"{', '.join(map(str, paths))}")
    return 0
