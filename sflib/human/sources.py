"""Where a study's annotation items and its AI judge's feedback come from.

:func:`study_material` gives, for a study, the responses to rate, the pairs to rank and the AI
judge's ratings / rankings of them (for the human-vs-AI table):

- through :mod:`sflib.study` when that module is present (``Study.read("responses" | "ratings" |
  "rankings")``; pairs are all pairs of the responses);
- for the paper study without it (or when its stages are not run yet): the vendored SuperNI sample —
  Alpaca-7B responses and the recorded GPT-3.5-Turbo ratings and rankings (``data/canonical/``); the
  pairs are those the AI judge ranked, so humans and the AI judge are compared on the same pairs.

:func:`simulated_answers` writes a small, clearly labelled *simulated* set of annotators into a
store (names ``sim-…``) so the analysis can be shown headless; it is never real human data.
"""
from __future__ import annotations


import numpy as np
import pandas as pd

from .items import assign, ranking_items, rating_items
from .session import AnnotationSession

PAPER_AI_NAME = "GPT-3.5-Turbo (recorded)"


def _vendored() -> dict:
    from ..consistency import load_vendored

    ratings, rankings = load_vendored("sample")
    return {"responses": ratings[["instruction_id", "response_id", "instruction", "input", "response"]],
            "pairs": rankings, "ai_ratings": ratings, "ai_rankings": rankings, "ai_name": PAPER_AI_NAME,
            "source": "vendored SuperNI sample (data/canonical)"}


def _short(error: Exception) -> str:
    """An error message with the outputs folder written as ``outputs`` (no machine paths in notebooks)."""
    from ..core.paths import outputs_dir

    return str(error).replace(str(outputs_dir()), "outputs")


def study_material(study: str = "paper") -> dict:
    """``responses``, ``pairs``, ``ai_ratings``, ``ai_rankings``, ``ai_name``, ``source`` for ``study`` (and
    ``feedback_judge``, the study file's ``feedback.judge``, when the study is run)."""
    try:
        from .. import study as study_mod  # provided by the study branch
    except ImportError:
        study_mod = None
    if study_mod is None:
        if str(study) != "paper":
            raise ValueError(f"study {study!r}: sflib.study is not available in this checkout; only 'paper' "
                             "(the vendored sample) can be annotated")
        return _vendored()
    try:
        st = study_mod.load(study)
        responses = st.read("responses")
    except Exception as e:  # no such study file, StageMissing / StaleStage: say what to do
        if str(study) == "paper":
            return dict(_vendored(), source=f"vendored SuperNI sample (data/canonical; the study is not run: {_short(e)})")
        raise ValueError(f"study {study!r}: {_short(e)}") from None
    out = {"responses": responses, "pairs": responses, "ai_ratings": None, "ai_rankings": None,
           "ai_name": None, "feedback_judge": st.config.feedback.judge,
           "source": f"study {st.name} (outputs/studies/{st.name})"}
    try:
        out["ai_ratings"], out["ai_rankings"] = st.read("ratings"), st.read("rankings")
        judges = out["ai_ratings"].get("judge")
        out["ai_name"] = str(judges.iloc[0]) if judges is not None and len(judges) else "AI judge"
    except Exception as e:  # the human-vs-AI table then has no AI row; say why
        out["source"] += f"; no AI judge feedback to compare with ({_short(e)})"
    if str(study) == "paper" and out["ai_rankings"] is not None:
        out["pairs"] = out["ai_rankings"]
    return out


def simulated_answers(store, material: dict, names=("sim-1", "sim-2", "sim-3"), *, n_instructions: int = 8,
                      overlap: float = 0.5, noise: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """SIMULATED annotators (``human:sim-…``): noisy copies of the AI judge's answers, for demos and
    headless runs only. Each rates and ranks through :class:`AnnotationSession` (the widget's own
    path), on the first ``n_instructions`` instructions the AI judge ranked, with ``overlap`` of
    the instructions shared. Returns the assignment used."""
    rng = np.random.default_rng(seed)
    none = pd.DataFrame(columns=["response_id", "score", "response_id_1", "response_id_2", "decision"])
    ai_r = (material["ai_ratings"] if material["ai_ratings"] is not None else none)
    ai_r = ai_r.dropna(subset=["score"]).drop_duplicates("response_id")
    ai_k = (material["ai_rankings"] if material["ai_rankings"] is not None else none)
    ai_k = ai_k.dropna(subset=["decision"]).drop_duplicates(["response_id_1", "response_id_2"])
    # the pairs the AI judge decided; with none (e.g. a human feedback judge not answered yet) all pairs,
    # answered around a neutral 4 / "equal"
    pairs = ranking_items(ai_k if len(ai_k) else material["pairs"])
    keep = list(dict.fromkeys(pairs["instruction_id"]))[:n_instructions]
    pairs = pairs[pairs["instruction_id"].isin(keep)]
    items_r = rating_items(material["responses"])
    items_r = items_r[items_r["instruction_id"].isin(keep)]
    score = dict(zip(ai_r["response_id"], ai_r["score"]))
    decision = dict(zip(ai_k["response_id_1"] + "-" + ai_k["response_id_2"], ai_k["decision"]))
    frames = []
    for kind, items in (("ratings", items_r), ("rankings", pairs)):
        plan = assign(items, list(names), kind=kind, overlap=overlap, per_item=len(names), both_orders=0.3,
                      seed=seed)
        frames.append(plan.assign(kind=kind))
        for name in names:
            s = AnnotationSession(items, name, store, kind, assignment=plan)
            while not s.done:
                task = s.current()
                if kind == "ratings":
                    base = score.get(task["response_id"], 4.0)
                    s.answer(int(np.clip(np.rint(base + rng.normal(0, noise)), 1, 7)))
                else:
                    pref = decision.get(task["item_id"], "equal")
                    if rng.random() < 0.25 * noise:
                        pref = rng.choice(["a", "b", "equal"])
                    pos = pref if pref == "equal" or task["order"] == "12" else {"a": "b", "b": "a"}[pref]
                    s.answer(str(pos))
            s.close()
    return pd.concat(frames, ignore_index=True)
