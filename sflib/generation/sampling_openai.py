"""Sampling from an OpenAI-compatible server (:func:`generate_openai`): one request per
(instruction, sample), or one request with ``n`` per instruction, through the judges' engine
(:func:`sflib.feedback.annotate.annotate`) and the annotation store, so a re-run resumes and pays nothing twice.

The ``n``-per-request path claims an instruction's sample keys before its request is sent and records
them as in flight (:mod:`sflib.feedback.claims`), like every other path: a run killed mid-request
leaves them recorded, the next run reports them as re-paid (``stats["in_flight_repaid"]``), and
two runs on one store never ask the same samples twice.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .generate import (GENERATION_TEMPLATE_VERSION, PROMPT_STYLES, _finish, prepare_instructions, sample_seed,
                       user_message)
from ..core.paths import outputs_dir
from ..core.prompts import alpaca_prompt


def _salt(seed: int, sample: int) -> str:
    """The cache salt of one sample: its index and the run's seed (seed 0 keeps the salt of stores
    written before the seed was part of the key, so their samples are reused)."""
    return f"sample={sample}" if int(seed) == 0 else f"sample={sample};seed={int(seed)}"


def sampling_requests(instructions: pd.DataFrame, k: int, prompt_style: str = "chat", seed: int = 0):
    """One :class:`~sflib.judges.base.Request` per (instruction, sample); ``cache_salt`` = sample index.

    ``chat``: the user turn is the instruction (and input); ``alpaca``: the user turn is the Alpaca
    prompt. ``meta`` carries ``instruction_id``, ``sample`` and a per-sample ``seed`` (for judges
    that can pass it on; it is not part of the prompt).
    """
    from ..judges.base import Request

    instr = prepare_instructions(instructions)
    requests = []
    for rec in instr.itertuples(index=False):
        content = alpaca_prompt(rec.instruction, rec.input) if prompt_style == "alpaca" else \
            user_message(rec.instruction, rec.input)
        for s in range(k):
            requests.append(Request(messages=[{"role": "user", "content": content}],
                                    meta={"kind": "generation", "instruction_id": rec.instruction_id, "sample": s,
                                          "cache_salt": _salt(seed, s), "seed": sample_seed(seed, rec.instruction_id, s),
                                          "instruction": rec.instruction, "input": rec.input}))
    return instr, requests


def generate_openai(instructions: pd.DataFrame, judge, k: int = 5, *, store=None, prompt_style: str = "chat",
                    seed: int = 0, generator: str | None = None, progress: bool = True,
                    n_per_request: bool | None = None) -> pd.DataFrame:
    """Sample ``k`` responses per instruction from an OpenAI-compatible server.

    ``judge``: an :class:`~sflib.judges.openai_judge.OpenAIJudge` configured with the sampling
    parameters (``temperature``, ``max_tokens``, ``top_p=...``), a judge name such as
    ``"openai:Qwen/Qwen2.5-7B-Instruct"``, or any Judge. Its name and parameters are part of the
    cache key, and each sample has its own key (``cache_salt`` = sample index), so a re-run
    returns the stored samples and a crashed run resumes. ``store``: None (the default store
    ``outputs/annotations.sqlite``), False (keep nothing), a path, or an
    :class:`~sflib.feedback.store.AnnotationStore`.

    ``n_per_request``: ask for the missing samples of an instruction in one request with ``n``
    (vLLM, OpenAI: the prompt is sent and paid once; each choice is stored under its own sample
    key). None or True: whenever the judge supports it; a server that answers fewer choices than
    asked (llama.cpp) has the rest asked one request per sample. False: one request per sample
    (a policy file says ``n_per_request: false``).

    A request that failed (after the client's retries) is never turned into an empty response:
    the call raises :class:`sflib.io.outputs.Incomplete` (a ``RuntimeError``) with the count and the
    samples that were drawn (``.result``), and a re-run retries only the failures.
    """
    from ..feedback.annotate import annotate
    from ..judges import get_judge
    from ..feedback.store import AnnotationStore

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
    failed = ((result["status"] == "failed") | result["raw"].isna()).to_numpy()
    rows = [{"instruction_id": req.meta["instruction_id"], "sample": req.meta["sample"],
             "response": str(rec["raw"]).strip(), "n_tokens": rec["completion_tokens"], "finish_reason": None}
            for req, rec, bad in zip(requests, result.to_dict("records"), failed) if not bad]
    params = {"model": judge.model, **dict(judge.params or {}), "seed": seed, "prompt_style": prompt_style}
    out = _finish(rows, instr, generator or judge.name, params)
    if failed.any():  # never an empty response for a failed request: the samples drawn, and what failed
        from ..io.outputs import Incomplete, incomplete_line

        errors = result.loc[failed, "error"].fillna("no text").astype(str).value_counts().head(3).to_dict()
        raise Incomplete(incomplete_line(f"sampling requests to {judge.name}", len(result), int(failed.sum()), errors)
                         + "; they are stored as failures and a re-run retries only them",
                         out, failed=int(failed.sum()), done=len(out))
    stats = dict(result.attrs.get("stats", {}))
    stats["prompt_tokens"] = stats.get("prompt_tokens", 0) + pre["prompt_tokens"]
    stats["completion_tokens"] = stats.get("completion_tokens", 0) + pre["completion_tokens"]
    stats["in_flight_repaid"] = stats.get("in_flight_repaid", 0) + pre.get("in_flight_repaid", 0)
    stats.update(n_requests=pre["requests"], n_samples=pre["samples"])
    out.attrs["stats"] = stats
    return out


def _sample_with_n(judge, requests: list, store, template: str, progress: bool) -> dict:
    """Ask each instruction's missing samples in one request with ``n``; store every choice under
    its sample's key (the prompt's tokens on the first choice: it was paid once). Samples a
    server did not return are left for :func:`annotate` to ask one by one."""
    from ..feedback.annotate import request_key
    from ..judges.base import Request

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
    from ..feedback.claims import ClaimRun

    with ClaimRun(store, judge.name) as run:
        kwargs = {}
        if getattr(judge, "supports_claims", False):  # claimed before sent, in flight while sent
            kwargs = dict(claim=lambda g: run.claim([keys[i] for i in members[g]]),
                          on_start=lambda g: run.mark_sent([keys[i] for i in members[g]]))
        for g, completion in judge.complete(asks, **kwargs):
            if completion is None:
                continue  # another run on this store asks these samples: annotate waits for them
            group_keys = [keys[i] for i in members[g]]
            # billed whether or not it brought text
            spent["prompt_tokens"] += completion.prompt_tokens
            spent["completion_tokens"] += completion.completion_tokens
            texts = completion.texts or ([completion.text] if completion.ok else [])
            texts = texts[:len(members[g])] if completion.ok else []
            short += bool(texts) and len(texts) < len(members[g])
            each, rest = divmod(completion.completion_tokens, max(1, len(texts)))
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
            # the request is over: samples it did not bring were not billed; asked one by one next
            store.clear_in_flight(group_keys[len(texts):])
        spent["in_flight_repaid"] = run.counts["in_flight_repaid"]
    if spent["in_flight_repaid"]:
        import logging

        logging.getLogger(__name__).warning(
            "%s: %d samples were in flight when an earlier run stopped; the provider may have billed "
            "them, and they were asked again", judge.name, spent["in_flight_repaid"])
    if short:
        import logging

        logging.getLogger(__name__).info("%s answered fewer choices than n for %d instructions; the rest are asked one "
                 "request per sample", judge.name, short)
    return spent


def _parse_text(text: str):
    """A sampling reply's value is its text; every reply that arrived is valid (empty ones included)."""
    return text, True
