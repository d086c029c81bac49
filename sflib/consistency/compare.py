"""Stage 04, the comparison: each ranked pair against the preference its two ratings imply.

Loading (original headerless CSVs or canonical tables, the vendored recorded feedback) and the
vectorised comparison behind :func:`sflib.consistency.report`; the definition (first occurrence
wins, skipped pairs counted, unknown labels raise) is documented in :mod:`sflib.consistency`.
With ``integer_scores=False`` the scores may be any number on the 1-7 scale (the soft verdicts'
expected scores, :mod:`sflib.feedback.soft_verdicts`); the ratings-implied preference is then the sign of
the score difference and ``gap`` is |score1 − score2| rounded to the nearest integer.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd

from ..core import catalog, data
from .. import io as sfio
from ..core.data import DECISIONS, DataError

RATINGS_INDEX = pd.Index([f"ratings says {d}" for d in DECISIONS], name="ratings")
RANKINGS_COLUMNS = pd.Index([f"rankings says {d}" for d in DECISIONS], name="rankings")
_CODE = {d: i for i, d in enumerate(DECISIONS)}  # a=0, b=1, equal=2
_EQUAL = _CODE["equal"]


class ConsistencyWarning(UserWarning):
    """Some ranked pairs could not be compared (a response without a rating, a pair without a decision)."""


# ----------------------------------------------------------------------------- loading

def load_ratings(path: os.PathLike | str) -> pd.DataFrame:
    """Ratings in any layout :func:`sflib.io.read_ratings` reads (the original headerless CSV
    ``instruction,input,output,score``, the ratings stage's tables); a row stored as invalid keeps
    a NaN score."""
    return sfio.read_ratings(path)


def load_rankings(path: os.PathLike | str) -> pd.DataFrame:
    """Rankings in any layout :func:`sflib.io.read_rankings` reads (the original headerless CSV
    ``instruction,input,output1,output2,feedback``, the rankings stage's tables); a row stored as
    invalid has no decision."""
    return sfio.read_rankings(path)


#: which -> (ratings role(s), rankings role) in :mod:`sflib.core.catalog`
VENDORED = {
    "sample": ("feedback.ratings", "feedback.rankings"),
    "evaluation": (("eval.ratings.reference", "eval.ratings.ratings_rm"), "eval.rankings.reference_vs_ratings_rm"),
}


def load_vendored(which: str = "sample") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paper's recorded GPT-3.5-Turbo feedback from ``data/canonical/`` as ``(ratings, rankings)``.

    - ``"sample"``: ratings of 20 SuperNI instructions x 5 Alpaca-7B responses (99 rows) and the
      rankings of their pairs (118 of 200 pairs); source ``superni``.
    - ``"evaluation"``: ratings of text-davinci-003 reference outputs and of the ratings-RM policy's
      outputs on AlpacaEval instructions, and rankings of reference (a) vs policy (b) — partial
      recordings; ``source`` is the AlpacaEval dataset of each instruction.
    """
    if which not in VENDORED:
        raise ValueError(f"unknown vendored feedback {which!r}; choose one of: {', '.join(VENDORED)}")
    rat, rank = VENDORED[which]
    rat = (rat,) if isinstance(rat, str) else rat
    ratings = pd.concat([load_ratings(catalog.path(role)) for role in rat], ignore_index=True)
    rankings = load_rankings(catalog.path(rank))
    if which == "evaluation":
        ref = sfio.read_model_outputs(catalog.path("eval.reference_outputs"))
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

def _scores(ratings: pd.DataFrame, name: str, integer: bool = True) -> np.ndarray:
    """Scores as floats (NaN = no valid score: an unparsable judge reply); anything else off the scale
    (or, with ``integer``, not a whole number) raises."""
    if "score" not in ratings.columns:
        raise DataError(name, f"ratings table has no 'score' column (it has: {', '.join(map(str, ratings.columns))})",
                        field="score")
    score = pd.to_numeric(ratings["score"], errors="coerce").astype(np.float64)
    bad = ratings["score"].notna() & score.isna()
    off = (score < data.SCORE_MIN) | (score > data.SCORE_MAX)
    bad |= score.notna() & ((off | (score != score.round())) if integer else off)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        value = ratings["score"].iloc[i]
        value = value.item() if isinstance(value, np.generic) else value
        what = "an integer" if integer else "a number"
        raise DataError(name, f"score {value!r} is not {what} on the {data.SCORE_MIN}-{data.SCORE_MAX} scale",
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
             rankings_name: str = "rankings", warn: bool = True,
             integer_scores: bool = True) -> tuple[pd.DataFrame, dict]:
    """The vectorised comparison; returns the compared pairs and the counts of what was left out.

    Every response is turned into one integer key (instruction id x response id, factorised over
    both tables); duplicates, first occurrences and score lookups are then sorts and array lookups."""
    ratings = _with_ids(ratings, ratings_name, "ratings")
    rankings = _with_ids(rankings, rankings_name, "rankings")
    if "decision" not in rankings.columns:
        raise DataError(rankings_name, "rankings table has no 'decision' column "
                                       f"(it has: {', '.join(map(str, rankings.columns))})", field="decision")
    score = _scores(ratings, ratings_name, integer_scores)
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
    # a response whose only ratings are stored invalid (unparsable reply, failed request) has a rating
    # row but no score: told apart from a response that was never rated
    invalid_keys = np.unique(key_r[~valid])
    has_invalid = ((np.isnan(s1) & np.isin(key_1[rows], invalid_keys))
                   | (np.isnan(s2) & np.isin(key_2[rows], invalid_keys)))
    stats["n_skipped_missing_rating"] = int((~rated).sum())
    stats["n_skipped_invalid_rating"] = int((~rated & has_invalid).sum())
    stats["n_skipped_no_decision"] = int((rated & ~decided).sum())
    use = rated & decided
    stats["n_compared"] = int(use.sum())
    n_unrated = stats["n_skipped_missing_rating"] - stats["n_skipped_invalid_rating"]
    invalid_note = ""
    if stats["n_skipped_invalid_rating"]:
        invalid_note = (f"{stats['n_skipped_invalid_rating']} reference a response whose rating in {ratings_name} "
                        f"is invalid ({_invalid_reasons(ratings, ~valid)})")
    if stats["n_compared"] == 0:
        parts = ([f"{n_unrated} reference a response that has no rating in {ratings_name}"] if n_unrated else []) + \
            ([invalid_note] if invalid_note else []) + \
            ([f"{stats['n_skipped_no_decision']} have no decision"] if stats["n_skipped_no_decision"] else [])
        hint = (" The rankings must be of the same responses (same instruction, input and text) as the ratings."
                if n_unrated else "")
        raise DataError(rankings_name, f"none of the {len(rows)} ranked pairs can be compared: "
                                       f"{', '.join(parts)}.{hint}")
    if warn and n_unrated:
        i = int(np.flatnonzero(~rated & ~has_invalid)[0])
        which = "response1" if np.isnan(s1[i]) else "response2"
        col = which if which in rankings.columns else ("response_id_1" if which == "response1" else "response_id_2")
        text = str(rankings[col].iloc[rows[i]])
        warnings.warn(f"{n_unrated} of {len(rows)} ranked pairs skipped: a response has no "
                      f"rating in {ratings_name} (first: {rankings_name} row {rows[i] + 1}, {which} {text[:60]!r})",
                      ConsistencyWarning, stacklevel=3)
    if warn and invalid_note:
        warnings.warn(f"{stats['n_skipped_invalid_rating']} of {len(rows)} ranked pairs skipped: "
                      + invalid_note.split(" ", 1)[1], ConsistencyWarning, stacklevel=3)
    if warn and stats["n_skipped_no_decision"]:
        warnings.warn(f"{stats['n_skipped_no_decision']} ranked pairs skipped: no decision in {rankings_name}",
                      ConsistencyWarning, stacklevel=3)

    rows, s1, s2 = rows[use], s1[use], s2[use]
    if integer_scores:
        s1, s2 = s1.astype(np.int64), s2.astype(np.int64)
    r_code = np.where(s1 > s2, _CODE["a"], np.where(s1 < s2, _CODE["b"], _EQUAL))
    k_code = code[rows]
    out = rankings[["instruction_id", "response_id_1", "response_id_2"]].iloc[rows].reset_index(drop=True)
    out.insert(0, "row", rows + 1)
    out["score1"], out["score2"] = s1, s2
    out["gap"] = np.abs(s1 - s2) if integer_scores else np.rint(np.abs(s1 - s2)).astype(np.int64)
    out["ratings_decision"] = pd.Categorical.from_codes(r_code, categories=list(DECISIONS))
    out["rankings_decision"] = pd.Categorical.from_codes(k_code, categories=list(DECISIONS))
    out["agree"] = r_code == k_code
    source = _sources(rankings, ratings, rows)
    if source is not None:
        out["source"] = source
    return out, stats


def _invalid_reasons(ratings: pd.DataFrame, invalid: np.ndarray) -> str:
    """Counts of why the ratings in ``invalid`` have no valid score: ``"unparsable reply: 18, failed request: 2"``."""
    if "status" in ratings.columns:
        status = ratings["status"].astype(str).to_numpy()[invalid]
        reasons = np.where(status == "failed", "failed request", "unparsable reply")
    else:
        reasons = np.full(int(invalid.sum()), "no valid score")
    counts = pd.Series(reasons).value_counts()
    return ", ".join(f"{r}: {n}" for r, n in counts.items())


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
    Raises :class:`~sflib.core.data.DataError` when nothing can be compared or a decision label is unknown.
    """
    out, stats = _compare(ratings, rankings, ratings_name=ratings_name, rankings_name=rankings_name)
    out.attrs["counts"] = stats
    return out



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

