"""Stage 04, the report: the 3x3 agreement matrix, consistency, kappa, tie rates, bootstrap intervals
and breakdowns of the pairs compared by :mod:`sflib.consistency.compare` (statistics from
:mod:`sflib.core.stats`), with hard or soft verdicts (:mod:`sflib.feedback.soft_verdicts`); and the texts behind
the numbers: pairs the two protocols prefer oppositely (:func:`opposite_preferences`), responses
rated twice with different scores (:func:`rated_differently`), response lengths
(:func:`response_words`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from ..feedback import soft_verdicts
from ..core import stats
from .compare import _cells, _compare, agreement_matrix

_stats = stats.agreement_stats


def _bootstrap(cells: np.ndarray, n_boot: int, rng: np.random.Generator, level: float = 0.95) -> dict[str, tuple]:
    """Percentile intervals from ``n_boot`` resamples of the pairs (multinomial draws of the 9 cells)."""
    return stats.cells_bootstrap(cells, n_boot, rng, level)


def _cluster_bootstrap(pairs: pd.DataFrame, n_boot: int, rng: np.random.Generator,
                       level: float = 0.95) -> dict[str, tuple]:
    """Percentile intervals from ``n_boot`` resamples of whole instructions (all their pairs together).

    The pairs of one instruction share responses, so they are not independent; resampling
    instructions gives honest (wider) intervals when agreement clusters by instruction."""
    inst, names = pd.factorize(pairs["instruction_id"])
    if n_boot <= 0 or len(names) == 0:
        return stats.cluster_bootstrap(np.zeros((0, 9), dtype=np.int64), 0, rng, level)
    per = np.bincount(inst * 9 + _cells(pairs), minlength=9 * len(names)).reshape(len(names), 9)
    return stats.cluster_bootstrap(per, n_boot, rng, level)


def _breakdown(pairs: pd.DataFrame, by: str, n_boot: int, rng: np.random.Generator) -> pd.DataFrame:
    """Consistency per value of ``by`` (one 3x3 table per group, counted in one ``bincount``), with the
    Wilson 95% interval of each group's share (a bootstrap of a group of 2 pairs that agree would give the
    zero-width interval 100–100%)."""
    groups, names = pd.factorize(pairs[by], sort=True)
    cells = np.bincount(groups * 9 + _cells(pairs), minlength=9 * len(names)).reshape(len(names), 9)
    st = _stats(cells)
    m = cells.reshape(-1, 3, 3)
    n = cells.sum(axis=1)
    rankings_share = m.sum(axis=1) / n[:, None]
    rows = []
    for g, value in enumerate(names):
        ci = stats.wilson(int(np.trace(m[g])), int(n[g]))  # never zero width, also at 0% / 100% and small n
        rows.append({by: value.item() if isinstance(value, np.generic) else value, "n": int(n[g]),
                     "agree": int(np.trace(m[g])), "consistency": float(st["consistency"][g]),
                     "ci_low": ci[0], "ci_high": ci[1],
                     "consistency_excluding_ties": float(st["consistency_excluding_ties"][g]),
                     "opposite": float((m[g, 0, 1] + m[g, 1, 0]) / n[g]),
                     "one_side_equal": float((m[g, 2, :2].sum() + m[g, :2, 2].sum()) / n[g]),
                     "rankings_a": float(rankings_share[g, 0]), "rankings_b": float(rankings_share[g, 1]),
                     "rankings_equal": float(rankings_share[g, 2])})
    return pd.DataFrame(rows)


@dataclass
class ConsistencyReport:
    """Everything :func:`report` measures. Rates are fractions in [0, 1]; ``ci`` maps a statistic's
    name to its (low, high) 95% bootstrap percentile interval."""

    matrix: pd.DataFrame
    matrix_normalised: pd.DataFrame
    n_compared: int
    n_agree: int
    n_skipped_missing_rating: int
    n_skipped_no_decision: int
    n_duplicates: int
    consistency: float
    consistency_excluding_ties: float
    n_excluding_ties: int
    ratings_tie_rate: float
    rankings_tie_rate: float
    kappa: float
    ci: dict[str, tuple[float, float]]
    by_gap: pd.DataFrame
    by_source: pd.DataFrame | None
    counts: dict[str, int] = field(default_factory=dict)
    pairs: pd.DataFrame | None = field(default=None, repr=False)
    bootstrap: int = 0
    seed: int | None = 0
    resample: str = "pairs"
    verdicts: str = "hard"
    verdict_info: dict = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """One row per quantity: value, 95% CI, and the counts of what was compared and left out."""
        def row(name, key, value):
            lo, hi = self.ci.get(key, (np.nan, np.nan)) if key else (np.nan, np.nan)
            value = int(value) if isinstance(value, (int, np.integer)) else round(float(value), 4)
            return {"quantity": name, "value": value, "ci_low": round(lo, 4), "ci_high": round(hi, 4)}

        rows = [
            row("consistency", "consistency", self.consistency),
            row("disagreement", None, 1 - self.consistency),
            row("  opposite preferences (a vs b)", None, self.opposite_rate),
            row("  one side says equal, the other prefers", None, self.one_side_equal_rate),
            row("consistency excluding ties", "consistency_excluding_ties", self.consistency_excluding_ties),
            row("Cohen's kappa", "kappa", self.kappa),
            row("ratings tie rate (equal scores)", "ratings_tie_rate", self.ratings_tie_rate),
            row("rankings tie rate (decision equal)", "rankings_tie_rate", self.rankings_tie_rate),
            row("pairs compared", None, self.n_compared),
            row("pairs compared excluding ties", None, self.n_excluding_ties),
            row("pairs skipped: a response has no rating", None, self.n_skipped_missing_rating),
            row("  of which the rating is invalid", None, self.counts.get("n_skipped_invalid_rating", 0)),
            row("pairs skipped: no decision", None, self.n_skipped_no_decision),
            row("duplicate rating rows (first kept)", None, self.counts.get("n_duplicate_ratings", 0)),
            row("  of which with a different score", None, self.counts.get("n_conflicting_duplicate_ratings", 0)),
            row("duplicate ranking rows (first kept)", None, self.counts.get("n_duplicate_rankings", 0)),
            row("  of which with a different decision", None, self.counts.get("n_conflicting_duplicate_rankings", 0)),
            row("ratings without a valid score", None, self.counts.get("n_invalid_ratings", 0)),
        ]
        out = pd.DataFrame(rows).set_index("quantity")
        out["value"] = pd.Series([r["value"] for r in rows], index=out.index, dtype=object)  # counts stay integers
        lo, hi = self.ci.get("consistency", (np.nan, np.nan))
        out.loc["disagreement", ["ci_low", "ci_high"]] = [round(1 - hi, 4), round(1 - lo, 4)]
        return out

    @property
    def opposite_rate(self) -> float:
        """Share of compared pairs where ratings and rankings prefer opposite responses."""
        m = self.matrix.to_numpy()
        return float((m[0, 1] + m[1, 0]) / m.sum())

    @property
    def one_side_equal_rate(self) -> float:
        """Share of compared pairs where exactly one side says equal."""
        m = self.matrix.to_numpy()
        return float((m[2, :2].sum() + m[:2, 2].sum()) / m.sum())

    @property
    def notes(self) -> list[str]:
        """What the soft verdicts fell back on (empty for hard verdicts asked for)."""
        return [v["note"] for v in self.verdict_info.values() if v.get("note")]

    def headline(self) -> str:
        lo, hi = self.ci.get("consistency", (np.nan, np.nan))
        ci = f" (95% CI {100 * lo:.1f}–{100 * hi:.1f})" if not np.isnan(lo) else ""
        soft = f" ({self.verdicts} verdicts)" if self.verdicts != "hard" else ""
        return (f"ratings and rankings agree on {100 * self.consistency:.1f}%{ci} of {self.n_compared} pairs{soft}, "
                f"i.e. disagree on {100 * (1 - self.consistency):.1f}%; kappa {self.kappa:.3f}")

    def to_dict(self) -> dict:
        """A JSON-ready dict (matrices as nested lists with labels, tables as records)."""
        return {
            "consistency": self.consistency, "consistency_excluding_ties": self.consistency_excluding_ties,
            "kappa": self.kappa, "ratings_tie_rate": self.ratings_tie_rate, "rankings_tie_rate": self.rankings_tie_rate,
            "ci95": {k: list(v) for k, v in self.ci.items()}, "bootstrap": self.bootstrap, "seed": self.seed,
            "resample": self.resample,
            "n_compared": self.n_compared, "n_agree": self.n_agree, "n_excluding_ties": self.n_excluding_ties,
            "n_skipped_missing_rating": self.n_skipped_missing_rating,
            "n_skipped_no_decision": self.n_skipped_no_decision, "n_duplicates": self.n_duplicates,
            "counts": self.counts,
            "matrix": {"rows": list(self.matrix.index), "columns": list(self.matrix.columns),
                       "counts": self.matrix.to_numpy().tolist()},
            "by_gap": self.by_gap.to_dict("records"),
            "by_source": None if self.by_source is None else self.by_source.to_dict("records"),
            "verdicts": self.verdicts, "verdict_info": self.verdict_info,
        }


RESAMPLE = ("pairs", "instructions")


def report(ratings: pd.DataFrame, rankings: pd.DataFrame, *, bootstrap: int = 1000, seed: int | None = 0,
           resample: str = "pairs", ratings_name: str = "ratings", rankings_name: str = "rankings",
           verdicts: str = "hard") -> ConsistencyReport:
    """The full consistency report of a ratings table against a rankings table (canonical frames,
    e.g. from :func:`load_ratings` / :func:`load_rankings` or :func:`sflib.io.read_ratings`).

    ``bootstrap`` resamples (0 = no intervals) with a numpy generator seeded by ``seed`` — the same
    seed gives the same intervals. ``resample="pairs"`` (default) treats compared pairs as
    independent; ``"instructions"`` resamples whole instructions for the overall intervals (pairs of
    one instruction share responses; the by-gap / by-source intervals always resample pairs).

    ``verdicts="soft"`` compares sign(expected_score1 − expected_score2) with sign(p_a − 0.5) (the
    soft columns, :mod:`sflib.feedback.soft_verdicts`; rows without a soft value use their hard verdict, a
    table without the column is used hard — ``verdict_info`` and :attr:`ConsistencyReport.notes`
    say which). ``gap`` is then |expected_score1 − expected_score2| rounded to an integer.
    """
    if resample not in RESAMPLE:
        raise ValueError(f"resample must be one of {', '.join(RESAMPLE)}, not {resample!r}")
    soft_verdicts.check_verdicts(verdicts)
    info: dict = {}
    if verdicts == "soft":
        ratings, r_info = soft_verdicts.soft_ratings(ratings, ratings_name)
        rankings, k_info = soft_verdicts.soft_rankings(rankings, rankings_name)
        info = {"ratings": r_info.as_dict(), "rankings": k_info.as_dict()}
        used = {r_info.verdicts, k_info.verdicts}
        verdicts = used.pop() if len(used) == 1 else f"{r_info.verdicts} ratings, {k_info.verdicts} rankings"
    pairs, counts = _compare(ratings, rankings, ratings_name=ratings_name, rankings_name=rankings_name,
                             integer_scores=not info or info["ratings"]["verdicts"] == "hard")
    rep = _report_from_pairs(pairs, counts, bootstrap=bootstrap, seed=seed, resample=resample)
    rep.verdicts, rep.verdict_info = verdicts, info
    return rep


def _report_from_pairs(pairs: pd.DataFrame, counts: dict, *, bootstrap: int, seed: int | None,
                       resample: str = "pairs") -> ConsistencyReport:
    matrix = agreement_matrix(pairs)
    cells = matrix.to_numpy().ravel()
    st = {k: float(v) for k, v in _stats(cells).items()}
    rng = np.random.default_rng(seed)
    ci = _bootstrap(cells, bootstrap, rng) if resample == "pairs" else _cluster_bootstrap(pairs, bootstrap, rng)
    by_gap = _breakdown(pairs, "gap", bootstrap, rng)
    by_source = _breakdown(pairs, "source", bootstrap, rng) if "source" in pairs.columns else None
    row_sums = matrix.sum(axis=1).replace(0, np.nan)
    return ConsistencyReport(
        matrix=matrix, matrix_normalised=matrix.div(row_sums, axis=0),
        n_compared=int(cells.sum()), n_agree=int(np.trace(matrix.to_numpy())),
        n_skipped_missing_rating=counts["n_skipped_missing_rating"],
        n_skipped_no_decision=counts["n_skipped_no_decision"],
        n_duplicates=counts["n_duplicate_ratings"] + counts["n_duplicate_rankings"],
        consistency=st["consistency"], consistency_excluding_ties=st["consistency_excluding_ties"],
        n_excluding_ties=int(matrix.to_numpy()[:2, :2].sum()),
        ratings_tie_rate=st["ratings_tie_rate"], rankings_tie_rate=st["rankings_tie_rate"], kappa=st["kappa"],
        ci=ci, by_gap=by_gap, by_source=by_source, counts=counts, pairs=pairs, bootstrap=bootstrap, seed=seed,
        resample=resample)


def compare_annotators(annotators: Mapping[str, tuple[pd.DataFrame, pd.DataFrame] | ConsistencyReport], *,
                       bootstrap: int = 1000, seed: int | None = 0, resample: str = "pairs",
                       verdicts: str = "hard") -> pd.DataFrame:
    """Side-by-side consistency for several annotators (or judges, or feedback sets).

    ``annotators`` maps a name to ``(ratings, rankings)`` frames (each annotator's own ratings and
    rankings of the same responses) or to an already computed :class:`ConsistencyReport`.
    Returns one row per annotator with consistency and its CI, consistency excluding ties, kappa,
    tie rates and the counts; the reports are in ``.attrs["reports"]``.
    """
    if not annotators:
        raise ValueError("compare_annotators needs at least one annotator: {name: (ratings, rankings)}")
    rows, reports = [], {}
    for name, value in annotators.items():
        if isinstance(value, ConsistencyReport):
            rep = value
        else:
            try:
                ratings, rankings = value
            except (TypeError, ValueError):
                raise ValueError(f"annotator {name!r}: expected a (ratings, rankings) pair of frames") from None
            rep = report(ratings, rankings, bootstrap=bootstrap, seed=seed, resample=resample, verdicts=verdicts,
                         ratings_name=f"{name} ratings", rankings_name=f"{name} rankings")
        reports[name] = rep
        rows.append({"annotator": name, "n_compared": rep.n_compared, "consistency": rep.consistency,
                     "ci_low": rep.ci["consistency"][0], "ci_high": rep.ci["consistency"][1],
                     "consistency_excluding_ties": rep.consistency_excluding_ties, "kappa": rep.kappa,
                     "ratings_tie_rate": rep.ratings_tie_rate, "rankings_tie_rate": rep.rankings_tie_rate,
                     "n_skipped_missing_rating": rep.n_skipped_missing_rating})
    out = pd.DataFrame(rows).set_index("annotator")
    out.attrs["reports"] = reports
    return out


# ----------------------------------------------------------------------------- the texts behind the numbers

def _short(text: object, width: int) -> str:
    text = " ".join(str(text if text is not None else "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _texts(ratings: pd.DataFrame, rankings: pd.DataFrame) -> dict:
    """``response_id`` -> response text, from the ratings and the rankings tables."""
    texts = {}
    if {"response_id", "response"} <= set(ratings.columns):
        texts.update(zip(ratings["response_id"], ratings["response"]))
    for i in ("1", "2"):
        if {f"response_id_{i}", f"response{i}"} <= set(rankings.columns):
            texts.update(zip(rankings[f"response_id_{i}"], rankings[f"response{i}"]))
    return texts


def response_words(ratings: pd.DataFrame, rankings: pd.DataFrame) -> dict:
    """``response_id`` -> length in words (:func:`sflib.core.stats.words`; for
    :func:`sflib.plots.plot_disagreement_vs_length`)."""
    return {rid: stats.words(t) for rid, t in _texts(ratings, rankings).items()}


def opposite_preferences(pairs: pd.DataFrame, ratings: pd.DataFrame, rankings: pd.DataFrame, n: int = 3,
                         width: int = 400) -> pd.DataFrame:
    """Up to ``n`` compared pairs where the ratings prefer one response and the rankings the other:
    the instruction, both responses (shortened to ``width`` characters), both scores and both decisions.
    One column per pair (largest rating gap first)."""
    if not len(pairs):
        return pd.DataFrame()
    opp = pairs[pairs["ratings_decision"].isin(["a", "b"]) & pairs["rankings_decision"].isin(["a", "b"])
                & (pairs["ratings_decision"] != pairs["rankings_decision"])]
    opp = opp.sort_values(["gap", "row"], ascending=[False, True], kind="stable").head(n)
    texts = _texts(ratings, rankings)
    instr = {}
    for df in (ratings, rankings):
        if {"instruction_id", "instruction"} <= set(df.columns):
            instr.update(zip(df["instruction_id"], df["instruction"]))
    cols = {}
    for k, r in enumerate(opp.itertuples(), 1):
        cols[f"pair {k}"] = {
            "instruction": _short(instr.get(r.instruction_id, ""), width),
            "response (a)": _short(texts.get(r.response_id_1, ""), width),
            "response (b)": _short(texts.get(r.response_id_2, ""), width),
            "rating of (a)": int(r.score1), "rating of (b)": int(r.score2),
            "ratings prefer": f"({r.ratings_decision})", "rankings prefer": f"({r.rankings_decision})"}
    return pd.DataFrame(cols)


def rated_differently(ratings: pd.DataFrame, width: int = 300) -> pd.DataFrame:
    """Responses rated more than once with different scores: the response (shortened) and its scores in order."""
    if not len(ratings) or "score" not in ratings or "response_id" not in ratings:
        return pd.DataFrame(columns=["instruction", "response", "scores"])
    ok = ratings[ratings["score"].notna()]
    keys = ["instruction_id", "response_id"] if "instruction_id" in ok else ["response_id"]
    # only responses with more than one distinct score are looped over (vectorised filter first: 5,000
    # instructions x k = 5 means 25,000 groups, almost all of one rating)
    ok = ok[ok.groupby(keys, sort=False)["score"].transform("nunique") > 1]
    groups = ok.groupby(keys, sort=False)
    rows = []
    for _, g in groups:
        if g["score"].nunique() > 1:
            rows.append({"instruction": _short(g["instruction"].iloc[0], 120) if "instruction" in g else "",
                         "response": _short(g["response"].iloc[0], width) if "response" in g else "",
                         "scores": ", ".join(str(int(v)) for v in g["score"])})
    return pd.DataFrame(rows, columns=["instruction", "response", "scores"])
