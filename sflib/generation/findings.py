"""Notebook 01's findings: the responses feedback is asked about — how many, how long, how many empty or cut.

:func:`findings` reads the study's ``responses`` stage (written by :func:`sflib.study.stages.responses`) and
returns a :class:`sflib.core.findings.Findings`; notebook 01 and ``python -m sflib study report`` display it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.findings import Estimate, Findings
from ..core.stats import word_counts


def summarise(responses: pd.DataFrame, max_new_tokens: int | None = None) -> dict:
    """Counts of a responses table: ``samples``, ``instructions``, ``distinct responses``, ``empty``,
    ``cut`` (finish reason ``length``; None when unknown) and the word lengths (``words``: a Series)."""
    words = word_counts(responses["response"]) if len(responses) else pd.Series(dtype="int64")
    finish = responses["finish_reason"] if "finish_reason" in responses else pd.Series(None, index=responses.index,
                                                                                       dtype=object)
    known = finish.notna().any()
    return {"samples": len(responses),
            "instructions": int(responses["instruction_id"].nunique()) if len(responses) else 0,
            "distinct responses": int(responses["response_id"].nunique()) if len(responses) else 0,
            "empty": int((responses["response"].fillna("").astype(str).str.strip() == "").sum()) if len(responses) else 0,
            "cut": int((finish == "length").sum()) if known else None, "words": words}


def findings(study, *, figures_dir=None, quick: bool = False) -> Findings:
    """Notebook 01's findings for ``study`` (its ``responses`` stage must exist)."""
    from .. import plots
    from ..study import acquire

    responses = acquire.read(study, "responses")
    policy = study.config.policy
    seeded = "responses" in study.config.seeded_from_data
    tokens = None if seeded else (min(policy.max_new_tokens, acquire.QUICK["max_new_tokens"]) if quick
                                  else policy.max_new_tokens)
    s = summarise(responses)
    who = "the paper's Alpaca-7B (seeded)" if seeded else policy.name
    f = Findings("01", "Responses", figures_folder=plots.study_figures_dir(study, figures_dir))
    f.counts = {"instructions": s["instructions"], "samples": s["samples"], "distinct responses": s["distinct responses"],
                "empty responses (kept)": s["empty"]}
    if s["cut"] is not None:
        f.counts["cut at the token limit"] = s["cut"]
    manifest = study.manifest("responses") or {}
    reasons = (manifest.get("counts") or {}).get("reasons") or {}
    f.exclusions = {str(k): int(v) for k, v in reasons.items()} if isinstance(reasons, dict) else {}
    if not len(responses):
        f.headline = ("01_generate: no responses: " + ("; ".join(f.exclusions) or "nothing was sampled")
                      + "; notebooks 02 and 03 will have nothing to judge")
        f.absent = {"response_lengths": "no responses", "lengths": "no responses", "examples": "no responses"}
        return f
    words = s["words"]
    med = float(np.median(words))
    f.estimates = [Estimate("median response length", med, n=s["samples"], unit=" words")]
    if s["cut"] is not None:
        f.estimates.append(Estimate.share(f"stopped at the {tokens}-token limit" if tokens else "cut at the token limit",
                                          s["cut"], s["samples"]))
    f.tables = {"lengths": words.describe(percentiles=[0.1, 0.5, 0.9]).round(1).to_frame("words").T,
                "per instruction": acquire.responses_summary(responses).describe().round(1).T[
                    ["count", "mean", "min", "50%", "max"]],
                "examples": _examples(responses)}
    title = (f"Lengths of the paper's {s['samples']} Alpaca-7B responses ({s['instructions']} instructions)"
             if seeded else None)
    f.figures = {"response_lengths": plots.plot_response_lengths(responses, max_new_tokens=tokens, title=title)}
    f.headline = (f"{s['samples']:,} responses ({s['distinct responses']:,} distinct texts) to {s['instructions']:,} "
                  f"instructions from {who}; median length {med:.1f} words"
                  + (f"; {s['cut']} of {s['samples']} stopped at the {tokens}-token limit" if s["cut"] is not None
                     and tokens else "") + ".")
    if seeded:
        f.notes.append("Two samples with the same text are one response (one response_id): notebooks 02 and 03 "
                       "judge the distinct responses.")
    threads = (manifest.get("counts") or {}).get("torch_threads")
    if threads:
        from ..core.threads import describe

        f.notes.append(f"Sampled on this machine with {describe(threads)}.")
    elif seeded:
        from ..core.threads import describe

        f.notes.append(f"The SmolLM2 demonstration at the end of this notebook samples with {describe()}.")
    if len(responses) < 10:
        f.notes.append(f"Only {len(responses)} responses: every later number rests on very few items.")
    return f.detached()


def _examples(responses: pd.DataFrame, width: int = 300) -> pd.DataFrame:
    """Three responses to each of the first two instructions (texts shortened)."""
    first = responses[responses["instruction_id"].isin(responses["instruction_id"].unique()[:2])]
    first = first.groupby("instruction_id", sort=False).head(3)
    return first.assign(instruction=first["instruction"].str.slice(0, 120),
                        response=first["response"].str.slice(0, width))[["instruction", "input", "response"]] \
        .reset_index(drop=True)


__all__ = ["findings", "summarise"]
