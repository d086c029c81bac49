"""What is in the data: the vendored canonical tables, counts per source dataset, and lengths.

Lengths are counted in whitespace-separated words, so they need no tokenizer and read the same
for every model. Where each file lives is :mod:`sflib.core.catalog`'s business.
"""
from __future__ import annotations

import pandas as pd

from .. import io as sfio
from ..core import catalog
from ..core.stats import word_counts


_EVAL_OUTPUTS = {"eval_reference_outputs": "text-davinci-003 (reference)",
                 "eval_ratings_rm_outputs": "best-of-64, ratings RM",
                 "eval_rankings_rm_outputs": "best-of-64, rankings RM"}

def load_canonical(name: str) -> pd.DataFrame:
    """The canonical table ``name`` (``data/canonical/<name>.jsonl``) as it is stored."""
    return sfio.read_table(catalog.canonical_path(name))


def word_count(texts) -> pd.Series:
    """Words per text (:func:`sflib.core.stats.word_counts`, the one word counter), index reset."""
    return word_counts(list(texts))


def summary_table() -> pd.DataFrame:
    """One row per vendored canonical table: rows, distinct instructions, distinct sources."""
    rows = []
    for path in sorted(catalog.canonical_dir().glob("*.jsonl")):
        df = sfio.read_table(path)
        n_ins = df["instruction_id"].nunique() if "instruction_id" in df else (
            df["id"].nunique() if "id" in df else df["instruction"].nunique())
        src = next((c for c in ("dataset", "source") if c in df and (df[c].astype(str) != "").any()), None)
        rows.append({"table": path.stem, "rows": len(df), "instructions": n_ins,
                     "sources": ", ".join(sorted(df[src].astype(str).unique())) if src else ""})
    return pd.DataFrame(rows)


def texts_long() -> pd.DataFrame:
    """All instruction and response/output texts of the vendored data in one long table:
    ``collection, source, kind ('instruction'|'input'|'response'), words``."""
    parts = []

    def add(collection, source, kind, texts):
        parts.append(pd.DataFrame({"collection": collection, "source": list(source), "kind": kind,
                                   "words": word_count(texts).to_numpy()}))

    ins = load_canonical("superni_instructions")
    add("SuperNI instructions", ins["source"], "instruction", ins["instruction"])
    add("SuperNI instructions", ins["source"], "input", ins["input"])
    resp = load_canonical("sample_responses")
    add("feedback sample (Alpaca-7B)", resp["source"], "response", resp["response"])
    for name, label in _EVAL_OUTPUTS.items():
        out = load_canonical(name)
        if name == "eval_reference_outputs":
            add("AlpacaEval instructions", out["dataset"], "instruction", out["instruction"])
        add(label, out["dataset"], "response", out["output"])
    return pd.concat(parts, ignore_index=True)


def source_counts() -> pd.DataFrame:
    """Instructions per source dataset for the AlpacaEval reference set and the policies' outputs."""
    frames = []
    for name, label in _EVAL_OUTPUTS.items():
        df = load_canonical(name)
        frames.append(df.groupby("dataset").size().rename(label))
    return pd.concat(frames, axis=1).fillna(0).astype(int)


# ----------------------------------------------------------------------------- notebook 00's findings

def _study_table(study, instructions: pd.DataFrame, evaluation: pd.DataFrame) -> pd.DataFrame:
    from pathlib import Path

    cfg = study.config
    files = ", ".join(Path(p).name for p in cfg.instructions.paths) or "the vendored SuperNI set"
    return pd.DataFrame({"this study": {
        "name": f"{study.name}: {cfg.description}",
        "instructions": f"{len(instructions)} from {files}",
        "policy (01)": f"{cfg.policy.name}, k = {cfg.policy.k} responses per instruction",
        "feedback judge (02, 03)": cfg.feedback.judge,
        "extra rating judges (02)": ", ".join(cfg.feedback.extra_judges) or "none",
        "reward models (05)": f"{cfg.reward_models.backbone}, {cfg.reward_models.epochs} epochs",
        "best-of-n (06)": f"n = {cfg.best_of_n.n} samples on {len(evaluation)} evaluation instructions",
        "evaluation judge (07)": f"{cfg.evaluation.judge}; protocols: {', '.join(cfg.evaluation.protocols)}",
        "seeded from the paper's data": ", ".join(cfg.seeded_from_data) or "nothing",
        "budget": "no cap" if cfg.budget_usd is None else f"${cfg.budget_usd:.2f}",
    }})


def released_feedback_counts() -> dict[str, dict]:
    """The paper's released feedback sample counted by the one rule (:mod:`sflib.feedback.clean`):
    ``{"ratings": {...}, "rankings": {...}}`` with ``rows``, ``kept``, the exclusions and the items."""
    from ..feedback.clean import clean_rankings, clean_ratings, rankings_notes
    from ..core import data as d

    responses = d.add_ids(load_canonical("sample_responses"))
    responses = responses.drop_duplicates("response_id")
    ratings, rankings = load_canonical("sample_ratings"), load_canonical("sample_rankings")
    kr, er = clean_ratings(ratings, responses)
    kk, ek = clean_rankings(rankings, responses)
    n_pairs = int(sum(k * (k - 1) // 2 for k in responses.groupby("instruction_id").size()))
    return {"ratings": {"rows": len(ratings), "kept": len(kr), "responses": len(responses), "exclusions": er},
            "rankings": {"rows": len(rankings), "kept": len(kk), "pairs": n_pairs,
                         "exclusions": ek, **rankings_notes(kk)}}


def findings(study, *, figures_dir=None, quick: bool = False):
    """Notebook 00's findings for ``study``: what it starts from (the study file, its instructions and
    evaluation instructions), what the run will cost (:func:`sflib.study.plan`), and the paper's released
    data it is compared with (tables, source datasets, lengths, the recorded feedback counted by the one
    rule of :mod:`sflib.feedback.clean`)."""
    from .. import plots
    from . import inputs
    from .planner import plan
    from ..core.findings import Findings
    from ..core.stats import word_counts as _wc

    ins = inputs.instructions(study)
    ev = inputs.evaluation_instructions(study)
    cost = plan(study)
    total = float(cost.loc[cost["stage"] == "total", "usd"].iloc[0])
    calls = int(cost.loc[cost["stage"] == "total", "calls"].iloc[0])
    words = _wc(ins["instruction"].astype(str) + " " + ins["input"].fillna("").astype(str)).to_numpy()
    by_source = (ins.assign(words=words).groupby("source")
                 .agg(instructions=("id", "size"), median_words=("words", "median"), max_words=("words", "max")))
    released = released_feedback_counts()
    r, k = released["ratings"], released["rankings"]
    lengths = texts_long()
    sources = source_counts()
    f = Findings("00", "The study's inputs", figures_folder=plots.study_figures_dir(study, figures_dir))
    f.counts = {"feedback instructions": len(ins), "evaluation instructions": len(ev), "planned calls": calls,
                "released responses (distinct)": r["responses"], "released responses rated": r["kept"],
                "released pairs of distinct responses": k["pairs"], "released pairs ranked": k["kept"]}
    f.exclusions = {f"released ratings: {key}": v for key, v in r["exclusions"].items() if v}
    f.exclusions.update({f"released rankings: {key}": v for key, v in k["exclusions"].items() if v})
    f.tables = {"study": _study_table(study, ins, ev),
                "cost plan": cost[["stage", "kind", "name", "calls", "stored", "input_tokens", "output_tokens", "usd",
                                   "note"]],
                "instructions by source": by_source,
                "instruction examples": ins[["instruction", "input"]].head(3).apply(lambda c: c.str.slice(0, 300)),
                "evaluation instructions by dataset": ev.groupby("dataset").size().rename("instructions").to_frame(),
                "released tables": summary_table(),
                "evaluation instructions per source (released)": sources,
                "lengths": lengths.groupby(["kind", "collection"])["words"].describe(percentiles=[0.5, 0.9]).round(1),
                "released examples": load_canonical("sample_responses")[["instruction", "input", "response"]].head(
                    3 if quick else 5)}
    f.figures = {"source_counts": plots.plot_source_counts(sources, title="Evaluation instructions per source dataset"),
                 "instruction_length": plots.plot_length_distributions(lengths, "instruction", title="Instruction length"),
                 "response_length": plots.plot_length_distributions(
                     lengths, "response", title="Response length: sample, reference and best-of-64 outputs")}
    budget = study.config.budget_usd
    f.headline = (f"Study {study.name}: {len(ins):,} feedback instructions, {len(ev):,} evaluation instructions, "
                  f"{calls:,} planned calls, ${total:.2f} planned" + (f" (budget ${budget:.2f})" if budget is not None
                                                                      else "") + ".")
    f.notes = [f"The paper's released feedback is partial (its scripts skipped a row on any API error): "
               f"{r['kept']} of its {r['responses']} distinct responses have a rating ({r['rows']} rating rows; "
               f"{r['exclusions']['duplicate rating, different score']} later ratings of an already rated response "
               f"with another score are not counted) and {k['kept']} pairs a decision ({k['kept'] - k[_SELF]} of the "
               f"{k['pairs']} pairs of distinct responses, and {k[_SELF]} of a response with an identical copy of "
               "itself). Notebooks 02–04 count the same way (sflib.feedback.clean).",
               "The recorded evaluation judgments cover only part of the 553 evaluation instructions; notebook 07 "
               "says how many per win rate."]
    return f.detached()


_SELF = "pairs of a response with an identical copy of itself"
