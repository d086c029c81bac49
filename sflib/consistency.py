"""Stage 5 — consistency: how often do ratings and rankings feedback agree on the same pair?

For every ranked pair ``(response1, response2)`` whose two responses both have a rating, the ratings
imply a preference — ``a`` if score1 > score2, ``b`` if score1 < score2, ``equal`` if the scores are
equal — and the pair's rankings decision is compared with it. *Consistency* is the share of compared
pairs where the two agree (the paper: they disagree about 60% of the time).

The definition is that of the original consistency script, made explicit:

- a response is identified by its instruction + input + text (here: the ``instruction_id`` and
  ``response_id`` hashes of :mod:`sflib.data`, so the lookup is a vectorised join, not a row loop);
- **duplicate rows count once, the first occurrence wins**: a response rated twice keeps its first
  score (the vendored sample has two such responses, rated 6 then 5 and 5 then 4), and a pair ranked
  twice in the same order keeps its first decision. ``(r1, r2)`` and ``(r2, r1)`` are different rows;
- a pair is **skipped** when either response has no (valid) rating; skipped pairs are counted
  (``n_skipped_missing_rating``) and a warning names one of them; ratings with no valid score
  (an unparsable judge reply stored as NaN) count as missing and are set aside *before* the first
  occurrence is picked (a failed first attempt does not hide a later valid rating);
- a rankings row with no decision (NaN / None: the judge failed) is skipped and counted too;
  a decision that is not ``a`` / ``b`` / ``equal`` (or the original ``(a)`` / ``(b)``) is an error.

Beyond the original's single number, :func:`report` gives the 3x3 agreement matrix, consistency
excluding ties, tie rates, Cohen's kappa, bootstrap intervals and breakdowns by rating gap and source.

The bootstrap resamples compared pairs with replacement. Every statistic here is a function of the
9 cell counts, so resampling ``n`` pairs is exactly a multinomial draw of the 9 cells with the
observed cell shares — that is how it is computed (thousands of replicates in milliseconds at 100k
pairs). Pairs of the same instruction are treated as independent, as in the paper.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from . import data
from .data import DECISIONS, DataError

RATINGS_INDEX = pd.Index([f"ratings says {d}" for d in DECISIONS], name="ratings")
RANKINGS_COLUMNS = pd.Index([f"rankings says {d}" for d in DECISIONS], name="rankings")
_CODE = {d: i for i, d in enumerate(DECISIONS)}  # a=0, b=1, equal=2
_EQUAL = _CODE["equal"]

__all__ = [
    "ConsistencyReport", "ConsistencyWarning", "compare", "report", "compare_annotators",
    "cohen_kappa", "agreement_matrix", "load_ratings", "load_rankings", "load_vendored", "add_cli",
]


class ConsistencyWarning(UserWarning):
    """Some ranked pairs could not be compared (a response without a rating, a pair without a decision)."""


# ----------------------------------------------------------------------------- loading

def load_ratings(path: os.PathLike | str) -> pd.DataFrame:
    """Ratings from the original headerless CSV (``instruction,input,output,score``) or a canonical
    ``.jsonl`` / ``.parquet`` table (as written by the ratings stage)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return data.read_ratings_csv(path)
    df = data.read_table(path, required=["score"])
    return _with_ids(df, path, "ratings")


def load_rankings(path: os.PathLike | str) -> pd.DataFrame:
    """Rankings from the original headerless CSV (``instruction,input,output1,output2,feedback``) or a
    canonical ``.jsonl`` / ``.parquet`` table (as written by the rankings stage)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return data.read_rankings_csv(path)
    df = data.read_table(path, required=["decision"])
    return _with_ids(df, path, "rankings")


VENDORED = {
    "sample": ("sample_ratings.jsonl", "sample_rankings.jsonl"),
    "evaluation": (("eval_ratings_reference.jsonl", "eval_ratings_ratings_rm.jsonl"),
                   "eval_rankings_reference_vs_ratings_rm.jsonl"),
}


def load_vendored(which: str = "sample") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paper's recorded GPT-3.5-Turbo feedback from ``data/canonical/`` as ``(ratings, rankings)``.

    - ``"sample"``: ratings of 20 SuperNI instructions x 5 Alpaca-7B responses (99 rows) and the
      rankings of their pairs (118 of 200 pairs); source ``superni``.
    - ``"evaluation"``: ratings of text-davinci-003 reference outputs and of the ratings-RM policy's
      outputs on AlpacaEval instructions, and rankings of reference (a) vs policy (b) — partial
      recordings; ``source`` is the AlpacaEval dataset of each instruction.
    """
    from .paths import data_dir

    if which not in VENDORED:
        raise ValueError(f"unknown vendored feedback {which!r}; choose one of: {', '.join(VENDORED)}")
    folder = data_dir() / "canonical"
    rat, rank = VENDORED[which]
    rat = (rat,) if isinstance(rat, str) else rat
    ratings = pd.concat([load_ratings(folder / f) for f in rat], ignore_index=True)
    rankings = load_rankings(folder / rank)
    if which == "evaluation":
        ref = data.read_table(folder / "eval_reference_outputs.jsonl", required=["instruction", "dataset"])
        dataset = ref.drop_duplicates("instruction").set_index("instruction")["dataset"]
        rankings["source"] = rankings["instruction"].map(dataset).fillna("").to_numpy()
    return ratings, rankings


def _with_ids(df: pd.DataFrame, where, kind: str) -> pd.DataFrame:
    """Make sure a frame has the id columns; compute them from the text columns when absent."""
    ids = ["instruction_id", "response_id"] if kind == "ratings" else ["instruction_id", "response_id_1", "response_id_2"]
    if all(c in df.columns for c in ids):
        return df
    text = ["instruction", "input", "response"] if kind == "ratings" else ["instruction", "input", "response1", "response2"]
    missing = [c for c in text if c not in df.columns]
    if missing:
        raise DataError(where, f"{kind} table needs the id columns ({', '.join(ids)}) or the text columns "
                               f"({', '.join(text)}); it has: {', '.join(map(str, df.columns))}", field=missing[0])
    return data.add_ids(df)


# ----------------------------------------------------------------------------- comparing

def _scores(ratings: pd.DataFrame, name: str) -> np.ndarray:
    """Scores as floats (NaN = no valid score: an unparsable judge reply); anything else off the scale raises."""
    if "score" not in ratings.columns:
        raise DataError(name, f"ratings table has no 'score' column (it has: {', '.join(map(str, ratings.columns))})",
                        field="score")
    score = pd.to_numeric(ratings["score"], errors="coerce").astype(np.float64)
    bad = ratings["score"].notna() & score.isna()
    bad |= score.notna() & ((score < data.SCORE_MIN) | (score > data.SCORE_MAX) | (score != score.round()))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        value = ratings["score"].iloc[i]
        value = value.item() if isinstance(value, np.generic) else value
        raise DataError(name, f"score {value!r} is not an integer on the {data.SCORE_MIN}-{data.SCORE_MAX} scale",
                        row=i + 1, field="score")
    return score.to_numpy()


def _decision_codes(values: pd.Series, name: str) -> np.ndarray:
    """Decision codes a=0, b=1, equal=2, -1 for no decision (NaN/None); unknown labels raise.

    Labels are normalised once per distinct value (``pd.factorize``), not once per row."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    canon = [data._LABELS.get(str(u).strip().lower()) for u in uniques]
    unknown = [j for j, c in enumerate(canon) if c is None]
    if unknown:
        rows = np.isin(codes, unknown)
        i = int(np.flatnonzero(rows)[0])
        found = ", ".join(repr(str(uniques[j])) for j in unknown[:5])
        raise DataError(name, f"unknown decision label {str(values.iloc[i])!r} ({int(rows.sum())} rows; unknown labels: "
                              f"{found}); expected a / b / equal (or the original (a) / (b) / equal)",
                        row=i + 1, field="decision")
    table = np.array([_CODE[c] for c in canon] + [-1], dtype=np.int64)  # index -1 -> no decision
    return table[codes]


def _first_occurrence(keys: np.ndarray) -> np.ndarray:
    """For every row, the position of the first row with the same key."""
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first[inverse.ravel()]


def _compare(ratings: pd.DataFrame, rankings: pd.DataFrame, *, ratings_name: str = "ratings",
             rankings_name: str = "rankings", warn: bool = True) -> tuple[pd.DataFrame, dict]:
    """The vectorised comparison; returns the compared pairs and the counts of what was left out.

    Every response is turned into one integer key (instruction id x response id, factorised over
    both tables); duplicates, first occurrences and score lookups are then sorts and array lookups."""
    ratings = _with_ids(ratings, ratings_name, "ratings")
    rankings = _with_ids(rankings, rankings_name, "rankings")
    if "decision" not in rankings.columns:
        raise DataError(rankings_name, "rankings table has no 'decision' column "
                                       f"(it has: {', '.join(map(str, rankings.columns))})", field="decision")
    score = _scores(ratings, ratings_name)
    valid = ~np.isnan(score)
    stats = {"n_ratings": len(ratings), "n_invalid_ratings": int((~valid).sum()), "n_rankings": len(rankings)}
    if not valid.any():
        raise DataError(ratings_name, f"no valid ratings to compare ({len(ratings)} rows, "
                                      f"{stats['n_invalid_ratings']} without a valid score)")
    if len(rankings) == 0:
        raise DataError(rankings_name, "no rankings to compare (the table is empty)")
    code = _decision_codes(rankings["decision"], rankings_name)

    n_r, n_k = len(ratings), len(rankings)
    inst, inst_names = pd.factorize(np.concatenate([ratings["instruction_id"].to_numpy(object),
                                                    rankings["instruction_id"].to_numpy(object)]))
    resp, resp_names = pd.factorize(np.concatenate([ratings["response_id"].to_numpy(object),
                                                    rankings["response_id_1"].to_numpy(object),
                                                    rankings["response_id_2"].to_numpy(object)]))
    width = np.int64(len(resp_names))
    key_r = inst[:n_r].astype(np.int64) * width + resp[:n_r]
    key_1 = inst[n_r:].astype(np.int64) * width + resp[n_r:n_r + n_k]
    key_2 = inst[n_r:].astype(np.int64) * width + resp[n_r + n_k:]

    # ratings: valid scores only, first occurrence of each response wins
    vr = np.flatnonzero(valid)
    first = vr[_first_occurrence(key_r[vr])]
    dup_r = first != vr
    stats["n_duplicate_ratings"] = int(dup_r.sum())
    stats["n_conflicting_duplicate_ratings"] = int((score[vr][dup_r] != score[first][dup_r]).sum())
    kept = vr[~dup_r]
    order = np.argsort(key_r[kept], kind="stable")
    rated_keys, rated_scores = key_r[kept][order], score[kept][order]

    # rankings: first occurrence of each ordered pair wins
    _, c1 = np.unique(key_1, return_inverse=True)
    _, c2 = np.unique(key_2, return_inverse=True)
    pair = c1.ravel().astype(np.int64) * (int(c2.max()) + 1) + c2.ravel()
    first_k = _first_occurrence(pair)
    dup_k = first_k != np.arange(n_k)
    stats["n_duplicate_rankings"] = int(dup_k.sum())
    stats["n_conflicting_duplicate_rankings"] = int((code[dup_k] != code[first_k[dup_k]]).sum())

    rated_inst = np.unique(inst[:n_r][kept])
    ranked_inst = np.unique(inst[n_r:][~dup_k])
    if len(np.intersect1d(rated_inst, ranked_inst, assume_unique=True)) == 0:
        raise DataError(rankings_name, f"the ratings ({ratings_name}: {len(rated_inst)} instructions) and the rankings "
                                       f"({len(ranked_inst)} instructions) share no instruction, so no pair can be "
                                       "compared. Are both files from the same run? (a rated instruction: "
                                       f"{_example_instruction(ratings)}; a ranked one: {_example_instruction(rankings)})")

    def lookup(keys):
        pos = np.minimum(np.searchsorted(rated_keys, keys), len(rated_keys) - 1)
        return np.where(rated_keys[pos] == keys, rated_scores[pos], np.nan)

    rows = np.flatnonzero(~dup_k)
    s1, s2 = lookup(key_1[rows]), lookup(key_2[rows])
    rated = ~(np.isnan(s1) | np.isnan(s2))
    decided = code[rows] >= 0
    stats["n_skipped_missing_rating"] = int((~rated).sum())
    stats["n_skipped_no_decision"] = int((rated & ~decided).sum())
    use = rated & decided
    stats["n_compared"] = int(use.sum())
    if stats["n_compared"] == 0:
        raise DataError(rankings_name, f"none of the {len(rows)} ranked pairs can be compared: "
                                       f"{stats['n_skipped_missing_rating']} reference a response that has no rating in "
                                       f"{ratings_name}, {stats['n_skipped_no_decision']} have no decision. The rankings "
                                       "must be of the same responses (same instruction, input and text) as the ratings.")
    if warn and stats["n_skipped_missing_rating"]:
        i = int(np.flatnonzero(~rated)[0])
        which = "response1" if np.isnan(s1[i]) else "response2"
        col = which if which in rankings.columns else ("response_id_1" if which == "response1" else "response_id_2")
        text = str(rankings[col].iloc[rows[i]])
        warnings.warn(f"{stats['n_skipped_missing_rating']} of {len(rows)} ranked pairs skipped: a response has no "
                      f"rating in {ratings_name} (first: {rankings_name} row {rows[i] + 1}, {which} {text[:60]!r})",
                      ConsistencyWarning, stacklevel=3)
    if warn and stats["n_skipped_no_decision"]:
        warnings.warn(f"{stats['n_skipped_no_decision']} ranked pairs skipped: no decision in {rankings_name}",
                      ConsistencyWarning, stacklevel=3)

    rows, s1, s2 = rows[use], s1[use].astype(np.int64), s2[use].astype(np.int64)
    r_code = np.where(s1 > s2, _CODE["a"], np.where(s1 < s2, _CODE["b"], _EQUAL))
    k_code = code[rows]
    out = rankings[["instruction_id", "response_id_1", "response_id_2"]].iloc[rows].reset_index(drop=True)
    out.insert(0, "row", rows + 1)
    out["score1"], out["score2"], out["gap"] = s1, s2, np.abs(s1 - s2)
    out["ratings_decision"] = pd.Categorical.from_codes(r_code, categories=list(DECISIONS))
    out["rankings_decision"] = pd.Categorical.from_codes(k_code, categories=list(DECISIONS))
    out["agree"] = r_code == k_code
    source = _sources(rankings, ratings, rows)
    if source is not None:
        out["source"] = source
    return out, stats


def _example_instruction(df: pd.DataFrame) -> str:
    if "instruction" in df.columns and len(df):
        return repr(str(df["instruction"].iloc[0])[:60])
    return repr(str(df["instruction_id"].iloc[0])) if len(df) else "none"


def _sources(rankings: pd.DataFrame, ratings: pd.DataFrame, rows: np.ndarray) -> np.ndarray | None:
    """The source dataset of each compared pair: the rankings' ``source``/``dataset`` column, else the ratings'."""
    for col in ("source", "dataset"):
        if col in rankings.columns:
            return rankings[col].iloc[rows].fillna("").astype(str).to_numpy()
    for col in ("source", "dataset"):
        if col in ratings.columns:
            m = ratings.drop_duplicates("instruction_id").set_index("instruction_id")[col]
            return m.reindex(rankings["instruction_id"].iloc[rows]).fillna("").astype(str).to_numpy()
    return None


def compare(ratings: pd.DataFrame, rankings: pd.DataFrame, *, ratings_name: str = "ratings",
            rankings_name: str = "rankings") -> pd.DataFrame:
    """One row per compared pair, in rankings order (first occurrence of each pair).

    Columns: ``row`` (1-based row of the rankings table), ``instruction_id``, ``response_id_1``,
    ``response_id_2``, ``score1``, ``score2``, ``gap`` = |score1 − score2|, ``ratings_decision``,
    ``rankings_decision``, ``agree`` and ``source`` when the tables have a ``source`` or ``dataset``
    column. The counts of what was left out are in ``.attrs["counts"]`` (see :func:`report`).
    Raises :class:`~sflib.data.DataError` when nothing can be compared or a decision label is unknown.
    """
    out, stats = _compare(ratings, rankings, ratings_name=ratings_name, rankings_name=rankings_name)
    out.attrs["counts"] = stats
    return out


# ----------------------------------------------------------------------------- statistics

def _codes(values: pd.Series) -> np.ndarray:
    if isinstance(values.dtype, pd.CategoricalDtype) and list(values.cat.categories) == list(DECISIONS):
        return values.cat.codes.to_numpy(np.int64)
    return values.astype(str).map(_CODE).to_numpy(np.int64)


def _cells(pairs: pd.DataFrame) -> np.ndarray:
    """Cell index 3 * ratings code + rankings code (a, b, equal order) of every compared pair."""
    return 3 * _codes(pairs["ratings_decision"]) + _codes(pairs["rankings_decision"])


def agreement_matrix(pairs: pd.DataFrame) -> pd.DataFrame:
    """3x3 counts: rows 'ratings says a/b/equal', columns 'rankings says a/b/equal'."""
    counts = np.bincount(_cells(pairs), minlength=9).reshape(3, 3)
    return pd.DataFrame(counts, index=RATINGS_INDEX.copy(), columns=RANKINGS_COLUMNS.copy())


def _stats(cells: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics of one or many 3x3 count tables given as (..., 9) arrays (a, b, equal order)."""
    cells = np.asarray(cells, dtype=np.float64)
    m = cells.reshape(cells.shape[:-1] + (3, 3))
    n = m.sum(axis=(-1, -2))
    agree = np.trace(m, axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        po = agree / n
        pe = (m.sum(axis=-1) * m.sum(axis=-2)).sum(axis=-1) / n ** 2
        kappa = np.where(pe < 1, (po - pe) / (1 - pe), np.nan)
        strict = m[..., :2, :2]  # neither side says equal
        n_strict = strict.sum(axis=(-1, -2))
        excl = np.trace(strict, axis1=-2, axis2=-1) / n_strict
        return {"consistency": po, "consistency_excluding_ties": excl, "kappa": kappa,
                "ratings_tie_rate": m[..., _EQUAL, :].sum(axis=-1) / n,
                "rankings_tie_rate": m[..., :, _EQUAL].sum(axis=-1) / n}


def cohen_kappa(matrix: pd.DataFrame | np.ndarray) -> float:
    """Cohen's kappa of a square agreement table of counts: (p_o − p_e) / (1 − p_e).

    NaN when chance agreement is 1 (both annotators used a single, identical label), where kappa
    is undefined."""
    m = np.asarray(matrix, dtype=np.float64)
    n = m.sum()
    if n == 0:
        return float("nan")
    po = np.trace(m) / n
    pe = float((m.sum(axis=1) * m.sum(axis=0)).sum()) / n ** 2
    return float("nan") if pe >= 1 else float((po - pe) / (1 - pe))


def _percentiles(draws: np.ndarray, level: float = 0.95) -> dict[str, tuple]:
    """Percentile intervals of every statistic over bootstrap replicates of the cells (n_boot x 9)."""
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out = {}
    for key, values in _stats(draws).items():
        v = values[~np.isnan(values)]
        out[key] = (float(np.percentile(v, lo)), float(np.percentile(v, hi))) if len(v) else (np.nan, np.nan)
    return out


def _bootstrap(cells: np.ndarray, n_boot: int, rng: np.random.Generator, level: float = 0.95) -> dict[str, tuple]:
    """Percentile intervals from ``n_boot`` resamples of the pairs (multinomial draws of the 9 cells)."""
    n = int(cells.sum())
    if n_boot <= 0 or n == 0:
        return {k: (np.nan, np.nan) for k in _stats(cells)}
    return _percentiles(rng.multinomial(n, cells / n, size=n_boot), level)


def _cluster_bootstrap(pairs: pd.DataFrame, n_boot: int, rng: np.random.Generator,
                       level: float = 0.95) -> dict[str, tuple]:
    """Percentile intervals from ``n_boot`` resamples of whole instructions (all their pairs together).

    The pairs of one instruction share responses, so they are not independent; resampling
    instructions gives honest (wider) intervals when agreement clusters by instruction."""
    inst, names = pd.factorize(pairs["instruction_id"])
    if n_boot <= 0 or len(names) == 0:
        return {k: (np.nan, np.nan) for k in _stats(np.zeros(9))}
    per = np.bincount(inst * 9 + _cells(pairs), minlength=9 * len(names)).reshape(len(names), 9)
    draws = np.empty((n_boot, 9), dtype=np.int64)
    chunk = max(1, 2_000_000 // len(names))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, len(names), size=(b, len(names))) + len(names) * np.arange(b)[:, None]
        weights = np.bincount(idx.ravel(), minlength=b * len(names)).reshape(b, len(names))  # times drawn
        draws[start:start + b] = weights @ per
    return _percentiles(draws, level)


def _breakdown(pairs: pd.DataFrame, by: str, n_boot: int, rng: np.random.Generator) -> pd.DataFrame:
    """Consistency per value of ``by`` (one 3x3 table per group, counted in one ``bincount``)."""
    groups, names = pd.factorize(pairs[by], sort=True)
    cells = np.bincount(groups * 9 + _cells(pairs), minlength=9 * len(names)).reshape(len(names), 9)
    st = _stats(cells)
    m = cells.reshape(-1, 3, 3)
    n = cells.sum(axis=1)
    rankings_share = m.sum(axis=1) / n[:, None]
    rows = []
    for g, value in enumerate(names):
        ci = _bootstrap(cells[g], n_boot, rng)["consistency"]
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

    def headline(self) -> str:
        lo, hi = self.ci.get("consistency", (np.nan, np.nan))
        ci = f" (95% CI {100 * lo:.1f}–{100 * hi:.1f})" if not np.isnan(lo) else ""
        return (f"ratings and rankings agree on {100 * self.consistency:.1f}%{ci} of {self.n_compared} pairs, "
                f"i.e. disagree on {100 * (1 - self.consistency):.1f}%; kappa {self.kappa:.3f}")

    def to_dict(self) -> dict:
        """A JSON-ready dict (matrices as nested lists with labels, tables as records)."""
        return {
            "consistency": self.consistency, "consistency_excluding_ties": self.consistency_excluding_ties,
            "kappa": self.kappa, "ratings_tie_rate": self.ratings_tie_rate, "rankings_tie_rate": self.rankings_tie_rate,
            "ci95": {k: list(v) for k, v in self.ci.items()}, "bootstrap": self.bootstrap, "seed": self.seed, "resample": self.resample,
            "n_compared": self.n_compared, "n_agree": self.n_agree, "n_excluding_ties": self.n_excluding_ties,
            "n_skipped_missing_rating": self.n_skipped_missing_rating,
            "n_skipped_no_decision": self.n_skipped_no_decision, "n_duplicates": self.n_duplicates,
            "counts": self.counts,
            "matrix": {"rows": list(self.matrix.index), "columns": list(self.matrix.columns),
                       "counts": self.matrix.to_numpy().tolist()},
            "by_gap": self.by_gap.to_dict("records"),
            "by_source": None if self.by_source is None else self.by_source.to_dict("records"),
        }


RESAMPLE = ("pairs", "instructions")


def report(ratings: pd.DataFrame, rankings: pd.DataFrame, *, bootstrap: int = 1000, seed: int | None = 0,
           resample: str = "pairs", ratings_name: str = "ratings", rankings_name: str = "rankings") -> ConsistencyReport:
    """The full consistency report of a ratings table against a rankings table (canonical frames,
    e.g. from :func:`load_ratings` / :func:`load_rankings` or :func:`sflib.data.read_ratings_csv`).

    ``bootstrap`` resamples (0 = no intervals) with a numpy generator seeded by ``seed`` — the same
    seed gives the same intervals. ``resample="pairs"`` (default) treats compared pairs as
    independent; ``"instructions"`` resamples whole instructions for the overall intervals (pairs of
    one instruction share responses; the by-gap / by-source intervals always resample pairs).
    """
    if resample not in RESAMPLE:
        raise ValueError(f"resample must be one of {', '.join(RESAMPLE)}, not {resample!r}")
    pairs, counts = _compare(ratings, rankings, ratings_name=ratings_name, rankings_name=rankings_name)
    return _report_from_pairs(pairs, counts, bootstrap=bootstrap, seed=seed, resample=resample)


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
                       bootstrap: int = 1000, seed: int | None = 0, resample: str = "pairs") -> pd.DataFrame:
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
            rep = report(ratings, rankings, bootstrap=bootstrap, seed=seed, resample=resample,
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


# ----------------------------------------------------------------------------- command line

def _run_cli(args: argparse.Namespace) -> int:
    ratings = load_ratings(args.ratings)
    rankings = load_rankings(args.rankings)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConsistencyWarning)
        rep = report(ratings, rankings, bootstrap=args.bootstrap, seed=args.seed, resample=args.resample,
                     ratings_name=str(args.ratings), rankings_name=str(args.rankings))
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    with pd.option_context("display.width", 120, "display.max_columns", 20, "display.float_format", "{:.4f}".format):
        print(rep.headline())
        print("(the paper reports ~60% disagreement)\n")
        print(rep.summary().to_string(), "\n")
        print("agreement matrix (counts):")
        print(rep.matrix.to_string(), "\n")
        print("row-normalised:")
        print(rep.matrix_normalised.round(3).to_string(), "\n")
        print("by rating gap |score1 - score2|:")
        print(rep.by_gap.to_string(index=False))
        if rep.by_source is not None:
            print("\nby source:")
            print(rep.by_source.to_string(index=False))
    if args.json:
        data.atomic_write_text(args.json, json.dumps(rep.to_dict(), indent=1, default=_json_default))
        print(f"\nwrote {args.json}")
    return 0


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def add_cli(subparsers) -> None:
    """Register ``python -m sflib consistency --ratings R --rankings K [--json OUT]``."""
    p = subparsers.add_parser("consistency", help="how often ratings and rankings feedback agree",
                              description="Compare ratings-implied preferences with rankings decisions "
                                          "(original headerless CSVs or canonical .jsonl/.parquet tables).")
    p.add_argument("--ratings", required=True, help="ratings: headerless CSV instruction,input,output,score or .jsonl/.parquet")
    p.add_argument("--rankings", required=True,
                   help="rankings: headerless CSV instruction,input,output1,output2,feedback or .jsonl/.parquet")
    p.add_argument("--json", default=None, help="also write the report as JSON here")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs (0 = none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resample", choices=RESAMPLE, default="pairs",
                   help="bootstrap unit for the overall CIs: pairs (default) or whole instructions")
    p.set_defaults(func=_run_cli)
