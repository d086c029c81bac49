"""Notebook 04's findings: how often ratings and rankings of the same responses disagree.

:func:`findings` counts the study's ratings and rankings by the one rule of :mod:`sflib.feedback.clean`
(the rule notebooks 02, 03 and 05 use), compares every ranked pair whose two responses are rated
(:func:`sflib.consistency.report`), and returns a :class:`sflib.core.findings.Findings`: disagreement — the
direction the paper states it in — with bootstrap intervals (pairs, and whole instructions), Cohen's kappa,
the kinds of disagreement with Wilson intervals, breakdowns by rating gap, length and source (groups
without data left out, fewer than :data:`MIN_N` pairs flagged), concrete disagreements, other feedback sets
and humans beside the judge. With ``save=True`` it also writes the ``consistency`` stage.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core import paper
from ..core.findings import Estimate, Findings
from ..feedback import clean
from .report import compare_annotators, opposite_preferences, rated_differently, report, response_words
from .compare import load_rankings, load_ratings, load_vendored

MIN_N = 10  # groups with fewer pairs are flagged in tables and drawn faint in figures
PAPER_QUANTITY = "disagreement, AI annotators (%)"
SKIP_UNRATED = "ranked pair with a response that has no valid rating"
SKIP_UNDECIDED = "ranked pair without a decision"


def paper_disagreement() -> float:
    """The paper's disagreement (%) between ratings and rankings, from :mod:`sflib.core.paper` (its abstract)."""
    return float(paper.table("consistency").set_index("quantity").loc[PAPER_QUANTITY, "paper_value"])


def _resolve(path) -> Path:
    """A relative path is tried as given, then at the repository root (papermill runs in notebooks/)."""
    from ..core import paths

    p = Path(path)
    return p if p.is_absolute() or p.exists() else paths.root() / p


def _small(table: pd.DataFrame) -> pd.DataFrame:
    ncol = "n" if "n" in table.columns else "n_compared"
    t = table[table[ncol] > 0].copy()
    t["disagreement"] = 1 - t["consistency"]
    t["dis_low"], t["dis_high"] = 1 - t["ci_high"], 1 - t["ci_low"]
    t["small_n"] = t[ncol] < MIN_N
    return t


def disagreement_estimates(rep, rep_instructions=None) -> list[Estimate]:
    """The headline estimates of a consistency report, in percent: disagreement (bootstrap over pairs, and
    over whole instructions when given), consistency, kappa, and the kinds of pairs (Wilson)."""
    lo, hi = rep.ci["consistency"]
    n = rep.n_compared
    m = rep.matrix.to_numpy()
    out = [Estimate("disagreement", 100 * (1 - rep.consistency), 100 * (1 - hi), 100 * (1 - lo), n=n, unit="%",
                    method=f"bootstrap over pairs, {rep.bootstrap} resamples, 95%")]
    if rep_instructions is not None:
        ilo, ihi = rep_instructions.ci["consistency"]
        out.append(Estimate("disagreement (instructions resampled)", 100 * (1 - rep.consistency), 100 * (1 - ihi),
                            100 * (1 - ilo), n=n, unit="%", method="bootstrap over instructions 95%"))
    out += [Estimate("consistency", 100 * rep.consistency, 100 * lo, 100 * hi, n=n, unit="%",
                     method="bootstrap over pairs 95%"),
            Estimate("Cohen's kappa", rep.kappa, *rep.ci.get("kappa", (None, None)), n=n, method="bootstrap 95%",
                     note="" if rep.kappa == rep.kappa else "undefined: one identical label on both sides"),
            Estimate.share("opposite preferences", int(m[0, 1] + m[1, 0]), n),
            Estimate.share("one side says equal", int(m[2, :2].sum() + m[:2, 2].sum()), n),
            Estimate.share("disagreement excluding ties", int(m[0, 1] + m[1, 0]), int(m[:2, :2].sum()))]
    return out


def findings(study, *, bootstrap: int = 2000, quick: bool = False, annotators: dict | None = None,
             figures_dir=None, save: bool = False) -> Findings:
    """Notebook 04's findings for ``study`` (its ratings and rankings stages must exist).

    ``annotators``: more feedback sets to set beside the judge, ``{"name": ["ratings file", "rankings file"]}``.
    ``save``: write the ``consistency`` stage (``pairs.jsonl``, ``report.json``, counts in the manifest)."""
    from .. import plots
    from ..study import acquire
    from ..study.findings import attempt

    seed = study.config.seed
    n_boot = min(bootstrap, 200) if quick else bootstrap
    verdicts = study.config.feedback.verdicts
    responses = acquire.read(study, "responses")
    ratings, rankings = study.read("ratings"), study.read("rankings")
    kr, er = clean.clean_ratings(ratings, responses if len(responses) else None)
    kk, ek = clean.clean_rankings(rankings, responses if len(responses) else None)
    judge = (study.manifest("ratings") or {}).get("judge") or study.config.feedback.judge
    paper_dis = paper_disagreement()
    f = Findings("04", "Consistency of ratings and rankings", figures_folder=plots.study_figures_dir(study, figures_dir))
    f.counts = {"responses rated": len(kr), "pairs ranked": len(kk)}
    f.exclusions = {f"ratings: {k}": v for k, v in er.items()}
    f.exclusions.update({f"rankings: {k}": v for k, v in ek.items()})
    got = attempt(report, kr, kk, bootstrap=n_boot, seed=seed, ratings_name="ratings (02)",
                  rankings_name="rankings (03)", verdicts=verdicts)
    rep = got.value
    f.notes += [f"note: {n}" for n in got.notes if "skipped" not in n]
    if rep is None:
        f.counts["pairs compared"] = 0
        f.headline = f"No consistency result: {got.reason}"
        f.absent = {k: got.reason for k in ("consistency_matrix", "paper_vs_ours", "consistency_by_gap")}
        if save:
            _save(study, f, None, got.reason, judge, len(kk))
        return f
    _counted_by_clean(rep, ratings, rankings, er, ek)
    f.counts["pairs compared"] = rep.n_compared
    f.exclusions[SKIP_UNRATED] = rep.n_skipped_missing_rating
    f.exclusions[SKIP_UNDECIDED] = rep.n_skipped_no_decision
    by_inst = attempt(report, kr, kk, bootstrap=n_boot, seed=seed, resample="instructions",
                      verdicts=verdicts).value
    f.estimates = disagreement_estimates(rep, by_inst)
    dis = f.estimate("disagreement")
    if rep.verdicts == "soft":
        f.notes.append("soft verdicts: " + ("; ".join(rep.notes) or "logprob-weighted for every compared pair"))
    ours = paper.paper_vs_ours({PAPER_QUANTITY: (dis.value, dis.low, dis.high)}, "consistency")
    f.tables["summary"] = rep.summary().astype(object).where(rep.summary().notna(), "")
    f.tables["paper vs this run"] = ours.astype(object).where(ours.notna(), "—")
    f.tables["by rating gap"] = _small(rep.by_gap)[["gap", "n", "small_n", "disagreement", "dis_low", "dis_high",
                                                    "opposite", "one_side_equal"]]
    f.tables["opposite preferences"] = opposite_preferences(rep.pairs, ratings, rankings, n=3)
    f.tables["rated twice, differently"] = rated_differently(ratings)
    f.figures["consistency_matrix"] = plots.plot_consistency_matrices(rep)
    f.figures["paper_vs_ours"] = plots.plot_paper_vs_ours(
        ours.iloc[:1], xlabel="ratings and rankings disagree (%)", title="Disagreement: the paper vs this run (95% CI)")
    f.figures["disagreement_vs_length"] = plots.plot_disagreement_vs_length(
        rep.pairs, lengths=response_words(ratings, rankings), min_n=MIN_N)
    f.figures["consistency_by_gap"] = plots.plot_consistency_by_gap(rep.by_gap, overall=rep.consistency, min_n=MIN_N)
    _by_source(f, study, rep, kr, kk, n_boot, seed, judge, paper_dis)
    _side_by_side(f, rep, judge, study, annotators or {}, n_boot, seed, paper_dis)
    _humans(f, study, ratings, rankings, judge, n_boot, seed)
    where = "includes" if dis.low <= paper_dis <= dis.high else ("is below" if dis.high < paper_dis else "is above")
    f.headline = (f"Ratings and rankings disagree on {dis.value:.1f}% of {rep.n_compared} pairs (95% CI "
                  f"{dis.low:.1f}–{dis.high:.1f}%), i.e. agree on {100 * rep.consistency:.1f}%; Cohen's kappa "
                  f"{rep.kappa:.2f}. The paper: {paper_dis:.0f}% disagreement ({paper.ARXIV}, Abstract); our interval "
                  f"{where} it.")
    if rep.n_compared < 30:
        f.notes.append(f"Only {rep.n_compared} compared pairs: read the intervals, not the point estimate.")
    if save:
        _save(study, f, rep, None, judge, len(kk))
    return f.detached()


def _counted_by_clean(rep, ratings, rankings, er: dict, ek: dict) -> None:
    """The report was computed on the cleaned tables: its row counts (read, invalid, duplicates) are set to the
    counts of the tables as stored, by the one rule, so its summary and ``report.json`` say what was left out."""
    rep.counts.update({
        "n_ratings": len(ratings), "n_rankings": len(rankings),
        "n_invalid_ratings": er[clean.INVALID] + er[clean.FAILED],
        "n_duplicate_ratings": er[clean.DUP_SAME_SCORE] + er[clean.DUP_OTHER_SCORE],
        "n_conflicting_duplicate_ratings": er[clean.DUP_OTHER_SCORE],
        "n_duplicate_rankings": ek[clean.DUP_SAME_DECISION] + ek[clean.DUP_OTHER_DECISION],
        "n_conflicting_duplicate_rankings": ek[clean.DUP_OTHER_DECISION],
        "n_invalid_rankings": ek[clean.INVALID] + ek[clean.FAILED]})
    rep.n_duplicates = rep.counts["n_duplicate_ratings"] + rep.counts["n_duplicate_rankings"]


def _by_source(f, study, rep, kr, kk, n_boot, seed, judge, paper_dis) -> None:
    """By source; with the paper's data the recorded evaluation pairs are a second source."""
    from .. import plots
    from ..study.findings import attempt

    seeded = {"ratings", "rankings"} <= set(study.config.seeded_from_data)
    src = rep
    if seeded:
        er, ek = load_vendored("evaluation")
        src = attempt(report, pd.concat([kr, clean.clean_ratings(er)[0]], ignore_index=True),
                      pd.concat([kk, clean.clean_rankings(ek)[0]], ignore_index=True), bootstrap=n_boot, seed=seed).value
    table = None if src is None or src.by_source is None else _small(src.by_source)
    if table is None or table["source"].nunique() < 2:
        f.absent["consistency_by_source"] = "one source only: no breakdown by source"
        return
    f.tables["by source"] = table[["source", "n", "small_n", "disagreement", "dis_low", "dis_high", "opposite",
                                   "one_side_equal"]]
    f.figures["consistency_by_source"] = plots.plot_consistency_by_group(
        table, label="source", title=f"Disagreement by source ({judge})", reference=paper_dis / 100,
        reference_label=f"paper: {paper_dis:.0f}% disagreement")
    if seeded:
        f.notes.append("By source: the superni pairs are two Alpaca-7B samples; the AlpacaEval pairs (recorded "
                       "evaluation judgments) set the text-davinci-003 reference against the ratings-RM policy — "
                       "different kinds of pairs, not only different instructions.")


def _side_by_side(f, rep, judge, study, annotators, n_boot, seed, paper_dis) -> None:
    """Other annotators' feedback sets beside the judge (drawn only when there is one: with the paper's data
    alone the only other set is the evaluation pairs, already in the by-source figure)."""
    from .. import plots
    from ..study.findings import attempt

    sets = {f"{judge} · study {study.name}": rep}
    for who, (r_path, k_path) in annotators.items():
        other = attempt(report, load_ratings(_resolve(r_path)), load_rankings(_resolve(k_path)),
                        bootstrap=n_boot, seed=seed)
        if other.ok:
            sets[who] = other.value
        else:
            f.notes.append(f"{who}: not compared: {other.reason}")
    if len(sets) < 2:
        f.absent["consistency_side_by_side"] = "no other annotator's feedback given (parameter annotators)"
        return
    table = compare_annotators(sets)
    shown = _small(table)
    f.tables["side by side"] = shown[["n_compared", "small_n", "disagreement", "dis_low", "dis_high", "kappa",
                                      "ratings_tie_rate", "rankings_tie_rate"]]
    f.figures["consistency_side_by_side"] = plots.plot_consistency_by_group(
        table, label="annotator", title="Disagreement side by side", reference=paper_dis / 100,
        reference_label=f"paper: {paper_dis:.0f}% disagreement")


def _humans(f, study, ratings, rankings, judge, n_boot, seed) -> None:
    from .. import human

    table, fig, note = human.consistency_beside_ai(study, ratings, rankings, ai_name=judge, bootstrap=n_boot, seed=seed)
    if len(table):
        f.tables["humans beside the judge"] = table
        f.notes += [line for line in note.splitlines() if line.strip()]
    if fig is not None:
        f.figures["humans_beside_ai"] = fig
    else:
        f.absent["humans_beside_ai"] = note.splitlines()[0] if note else "no human feedback in the study's store"


def _save(study, f: Findings, rep, reason, judge, n_rankings: int) -> None:
    from ..study.findings import save_stage

    skipped = {k: f.exclusions.get(k, 0) for k in (SKIP_UNRATED, SKIP_UNDECIDED)}
    counts = {"n": n_rankings, "valid": rep.n_compared if rep is not None else 0,
              "invalid": sum(skipped.values()) if rep is not None else n_rankings, "failed": 0,
              "reasons": {k: v for k, v in skipped.items() if v} if rep is not None else {reason: n_rankings}}
    if rep is None:
        # nothing compared: every pair 03 asked about is left out, those whose ranking was unparsable or failed too
        upstream = {f"rankings: {k}": f.exclusions.get(f"rankings: {k}", 0) for k in (clean.INVALID, clean.FAILED)}
        counts["n"] = counts["invalid"] = n_rankings + sum(upstream.values())
        counts["reasons"].update({k: v for k, v in upstream.items() if v})
        counts["reason"] = reason
    save_stage(study, "consistency", tables={"pairs": rep.pairs if rep is not None else pd.DataFrame()},
               json_files={"report.json": rep.to_dict() if rep is not None else {"reason": reason}},
               counts=counts, inputs=["ratings", "rankings"], judge=judge, notes=reason)


__all__ = ["findings", "disagreement_estimates", "paper_disagreement", "MIN_N"]
