"""Notebooks 02 and 03's findings: ratings and rankings of notebook 01's responses, counted by one rule.

:func:`ratings_findings` (02) and :func:`rankings_findings` (03) read the study's stages and count every
row through :mod:`sflib.feedback.clean` — the same rule notebooks 00, 04 and 05 use — so "responses rated"
and "pairs ranked" are one number everywhere. Each returns a :class:`sflib.core.findings.Findings`.
"""
from __future__ import annotations

import pandas as pd

from ..core.findings import Estimate, Findings
from ..core.stats import bootstrap_ci
from . import clean

SELF_PAIRS = "pairs of a response with an identical copy of itself"


def _outcome(table: pd.DataFrame) -> pd.DataFrame:
    """Rows per status (ok / invalid / failed); a seeded table without ``status`` is all ``recorded``."""
    if not len(table):
        return pd.DataFrame({"rows": []})
    status = table["status"].fillna("unknown").astype(str) if "status" in table else pd.Series("recorded", index=table.index)
    return status.value_counts().rename_axis("status").to_frame("rows")


def equal_score_pairs(kept_ratings: pd.DataFrame, responses: pd.DataFrame) -> tuple[int, int]:
    """``(pairs with equal scores, pairs with both responses rated)`` over the pairs of distinct responses."""
    from .rankings import make_pairs

    if not len(kept_ratings) or not len(responses):
        return 0, 0
    main = kept_ratings
    if "judge" in main.columns and main["judge"].nunique() > 1:
        main = main[main["judge"] == main["judge"].iloc[0]]
    score = main.set_index("response_id")["score"]
    pairs = make_pairs(responses.drop_duplicates("response_id"))
    s1, s2 = pairs["response_id_1"].map(score), pairs["response_id_2"].map(score)
    both = s1.notna() & s2.notna()
    return int((s1 == s2)[both].sum()), int(both.sum())


def ratings_findings(study, *, figures_dir=None, quick: bool = False) -> Findings:
    """Notebook 02's findings: the score distribution of the valid ratings (each response once), the ties the
    ratings protocol cannot break, and what was left out (invalid, failed, duplicates, unrated)."""
    from .. import plots
    from ..study import acquire

    responses = acquire.read(study, "responses")
    ratings = acquire.read(study, "ratings")
    seeded = "ratings" in study.config.seeded_from_data
    judge = "GPT-3.5-Turbo (the paper's, recorded)" if seeded else study.config.feedback.judge
    kept, ex = clean.clean_ratings(ratings, responses if len(responses) else None)
    n_resp = int(responses["response_id"].nunique()) if len(responses) else 0
    f = Findings("02", "Ratings", figures_folder=plots.study_figures_dir(study, figures_dir))
    f.counts = {"responses (distinct, from 01)": n_resp, "rating rows": len(ratings), "responses rated": len(kept)}
    f.exclusions = ex
    f.tables["outcome"] = _outcome(ratings)
    f.notes += _stage_lines(study, "ratings", "ratings", "02_ratings")
    if not len(kept):
        f.headline = (f"No valid rating of the {n_resp} responses by {judge} ({clean.describe(ex)}): later stages "
                      "cannot compare or train on ratings.")
        f.absent = {"rating_distribution": "no valid rating", "scores": "no valid rating"}
        return f
    scores = kept["score"].astype(float)
    low, high = bootstrap_ci(scores.to_numpy(), seed=study.config.seed)
    eq, both = equal_score_pairs(kept, responses)
    top = int(scores.value_counts().idxmax())
    f.estimates = [Estimate("mean score", float(scores.mean()), low, high, n=len(kept), method="bootstrap 95%"),
                   Estimate.share(f"share of score {top} (the commonest)", int((scores == top).sum()), len(kept)),
                   Estimate.share("pairs of rated responses with equal scores", eq, both)]
    by = "source" if "source" in kept.columns else None
    dist = pd.crosstab(kept[by].fillna("unknown") if by else pd.Series("all", index=kept.index), kept["score"])
    f.tables["scores"] = scores.describe()[["count", "mean", "std", "min", "50%", "max"]].to_frame(judge).T
    f.tables["scores by source"] = dist
    ends = kept.sort_values("score", kind="stable").iloc[[0, -1]]
    f.tables["lowest and highest"] = ends.assign(instruction=ends["instruction"].str.slice(0, 150),
                                                 response=ends["response"].str.slice(0, 300))[
        ["score", "instruction", "response"]].reset_index(drop=True) if "response" in ends else ends[["score"]]
    f.figures["rating_distribution"] = plots.plot_score_distribution(kept, by="source")
    if "extra_ratings" in _tables(study, "ratings"):
        extra = study.read("ratings", "extra_ratings")
        both_judges = pd.concat([ratings, extra], ignore_index=True)
        ek, _ = clean.clean_ratings(both_judges)
        f.tables["judges"] = pd.DataFrame({j: {"rows": int((both_judges["judge"] == j).sum()),
                                               "responses rated": int((ek["judge"] == j).sum()),
                                               "mean score": float(ek.loc[ek["judge"] == j, "score"].mean())}
                                           for j in both_judges["judge"].unique()}).T
        f.figures["rating_distribution_by_judge"] = plots.plot_score_distribution(ek, by="judge")
    else:
        f.absent["rating_distribution_by_judge"] = "one judge (add more with feedback.extra_judges in the study file)"
    f.headline = (f"{len(kept)} of the {n_resp} responses have a valid rating by {judge}: mean score "
                  f"{scores.mean():.2f}; the commonest score is {top} ({100 * (scores == top).mean():.0f}%); "
                  f"{100 * eq / both:.0f}% of the {both} pairs of rated responses have equal scores — ties the "
                  "ratings protocol cannot break." if both else
                  f"{len(kept)} of the {n_resp} responses have a valid rating by {judge}: mean score {scores.mean():.2f}.")
    if ex[clean.DUP_OTHER_SCORE]:
        f.notes.append(f"{ex[clean.DUP_OTHER_SCORE]} response(s) were rated again with another score (the same text, "
                       "the same prompt): the first rating is kept, here and in notebooks 04 and 05.")
    if len(kept) < 10:
        f.notes.append(f"Only {len(kept)} rated responses: the distribution and every share are very uncertain.")
    return f.detached()


def _stage_lines(study, stage: str, what: str, notebook: str) -> list[str]:
    """The stage's outcome line from its manifest (n, valid, invalid, failed and why) and, when nothing is
    valid, what that means for later stages — for a stage this study acquired (a seeded one has none)."""
    from ..study import acquire

    if stage in study.config.seeded_from_data:
        return []
    counts = (study.manifest(stage) or {}).get("counts") or {}
    if "n" not in counts:
        return []
    return [acquire.outcome_line(counts, what)] + [x for x in [acquire.too_little(counts, what, notebook)] if x]


def _tables(study, stage: str) -> list[str]:
    return list(((study.manifest(stage) or {}).get("tables") or {}))


def _position(study, rankings: pd.DataFrame) -> tuple[bool, str, dict]:
    from ..study import acquire
    from .rankings import position_bias

    seeded = "rankings" in study.config.seeded_from_data
    fb = study.config.feedback
    recorded = acquire.is_recorded(fb.judge)
    measured = not seeded and not recorded and fb.both_orders and {"verdict_12", "verdict_21"} <= set(rankings.columns)
    reason = ("the released files record only the final decision, not the verdict in each order" if seeded
              else "the judge replays recorded decisions" if recorded
              else "both_orders is off in the study file" if not fb.both_orders else "no verdicts per order")
    return measured, reason, (position_bias(rankings) if measured else {})


def rankings_findings(study, *, figures_dir=None, quick: bool = False) -> Findings:
    """Notebook 03's findings: the decisions (a / b / equal) on the ranked pairs, the tie rate with its Wilson
    interval, position bias where it was measured, and what was left out."""
    from .. import plots
    from ..study import acquire

    responses = acquire.read(study, "responses")
    rankings = acquire.read(study, "rankings")
    kept, ex = clean.clean_rankings(rankings, responses if len(responses) else None)
    self_pairs = clean.rankings_notes(kept)[SELF_PAIRS]
    n_pairs = len(clean._expected_pairs(responses)) if len(responses) else 0
    f = Findings("03", "Rankings", figures_folder=plots.study_figures_dir(study, figures_dir))
    f.counts = {"pairs of distinct responses (from 01)": n_pairs, "ranking rows": len(rankings),
                "pairs ranked": len(kept), SELF_PAIRS + " (kept)": self_pairs}
    f.exclusions = ex
    f.tables["outcome"] = _outcome(rankings)
    f.notes += _stage_lines(study, "rankings", "ranked pairs", "03_rankings")
    measured, reason, pb = _position(study, rankings)
    if not measured:
        f.absent["position_bias"] = f"not measured: {reason}"
    if not len(kept):
        f.headline = f"No ranked pair has a decision ({clean.describe(ex)}): later stages cannot use rankings."
        f.absent.update({"decisions": "no decided pair"})
        return f
    table = plots.decision_table(kept)
    f.tables["decision counts"] = table.assign(share=table["share"].map("{:.1%}".format))
    f.estimates = [Estimate.share(f"decision {d}" if d != "equal" else "equal (tie rate: the two orders disagree)",
                                  int(table.loc[d, "pairs"]), len(kept)) for d in ("a", "b", "equal")]
    if measured and pb.get("pairs"):
        n = int(pb["pairs"])
        f.estimates.append(Estimate.share("first-shown output picked (both orders)",
                                          int(round(pb["first_pick_rate"] * 2 * n)), 2 * n))
        f.figures["position_bias"] = plots.plot_position_bias(pb, measured=True)
    elif measured:
        f.absent["position_bias"] = "no pair has a valid verdict in both orders"
    f.figures["decisions"] = plots.plot_decisions(kept)
    examples = kept.groupby("decision").head(1).sort_values("decision")
    if {"response1", "response2", "instruction"} <= set(examples.columns):
        f.tables["examples"] = examples.assign(instruction=examples["instruction"].str.slice(0, 120),
                                               response1=examples["response1"].str.slice(0, 250),
                                               response2=examples["response2"].str.slice(0, 250))[
            ["decision", "instruction", "response1", "response2"]].reset_index(drop=True)
    share = table["share"]
    f.headline = (f"{len(kept)} pairs ranked ({len(kept) - self_pairs} of the {n_pairs} pairs of distinct responses"
                  + (f", and {self_pairs} of a response with an identical copy of itself" if self_pairs else "")
                  + f"): response 1 better {100 * share['a']:.0f}%, response 2 better {100 * share['b']:.0f}%, "
                  f"equal {100 * share['equal']:.0f}%"
                  + (f"; the first-shown output is picked {100 * pb['first_pick_rate']:.0f}% of the time over "
                     f"{pb['pairs']} pairs" if measured and pb.get("pairs") else "") + ".")
    if len(kept) < 10:
        f.notes.append(f"Only {len(kept)} decided pairs: the shares are very uncertain (see the intervals).")
    return f.detached()


def findings(study, *, figures_dir=None, quick: bool = False) -> dict[str, Findings]:
    """Both feedback stages' findings: ``{"02": ratings, "03": rankings}``."""
    return {"02": ratings_findings(study, figures_dir=figures_dir, quick=quick),
            "03": rankings_findings(study, figures_dir=figures_dir, quick=quick)}


__all__ = ["ratings_findings", "rankings_findings", "findings", "equal_score_pairs"]
