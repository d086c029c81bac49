"""The statistics every stage uses (consistency, notebook 04; evaluation, 07; ...), in one place.

- **The paper's interval**: ``mean ×100 ± 1.96·SEM`` (sample SD, ddof=1): :func:`sem`, :func:`ci_sem`,
  :func:`mean_ci`.
- **Percentile bootstrap of a mean** over items with :func:`scipy.stats.bootstrap`: :func:`bootstrap_ci`.
- **Cohen's kappa**, one definition for all of sflib (two annotators' labels or a square table; NaN in
  the degenerate case): :func:`cohen_kappa`; many tables at once: :func:`cohen_kappa_tables`.
- **Words**: the one word counter (:func:`words`, :func:`word_counts`).
- **Bootstraps of 3×3 agreement tables** (consistency): every consistency statistic is a function of
  the 9 cell counts, so resampling ``n`` pairs with replacement is exactly a multinomial draw of the
  cells with the observed shares (:func:`multinomial_draws`); resampling whole instructions (the
  *cluster* bootstrap: an instruction's pairs share responses) is a draw of instruction weights times
  the per-instruction cell counts (:func:`cluster_draws`). Both give replicates of the cells in
  milliseconds at 100k pairs, where :func:`scipy.stats.bootstrap` would resample 100k labels per
  replicate; :func:`percentile_intervals` turns replicates into intervals of any statistic of the
  cells (e.g. :func:`agreement_stats`).
- **Proportions**: the Wilson score interval for every proportion shown (:func:`wilson`, :func:`proportion`,
  :func:`scipy.stats.binomtest`; never zero width at 0% or 100%) and whether
  a pairwise accuracy is within it of chance (:func:`at_chance`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from scipy import stats as _st

if TYPE_CHECKING:
    import pandas as pd

#: default bootstrap resamples of a win rate
N_BOOT = 2000
Z95 = 1.96


def sem(values: Sequence[float]) -> float:
    """Standard error of the mean (sample SD, ddof=1); NaN below 2 values."""
    v = np.asarray(values, dtype=float)
    return float(_st.sem(v)) if len(v) >= 2 else float("nan")


def ci_sem(values: Sequence[float]) -> float:
    """Half-width of the paper's 95% interval, 1.96·SEM (sample SD, ddof=1); NaN below 2 values."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float("nan")
    return float(Z95 * _st.sem(v))


def mean_ci(values: Sequence[float], scale: float = 100.0) -> tuple[float, float]:
    """``(mean, 1.96·SEM)`` both ×``scale`` (the paper reports win rates ×100); NaN when empty."""
    v = np.asarray(values, dtype=float)
    return (scale * float(v.mean()) if len(v) else float("nan")), scale * ci_sem(v)


def bootstrap_ci(values: Sequence[float], *, n_boot: int = N_BOOT, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling items, :func:`scipy.stats.bootstrap`);
    NaN below 2 values; a constant sample gives the point interval."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float("nan"), float("nan")
    if np.all(v == v[0]):
        return float(v[0]), float(v[0])
    kwargs = dict(n_resamples=n_boot, confidence_level=level, method="percentile", vectorized=True)
    try:
        res = _st.bootstrap((v,), np.mean, rng=np.random.default_rng(seed), **kwargs)
    except TypeError:  # scipy < 1.15 names the generator random_state
        res = _st.bootstrap((v,), np.mean, random_state=np.random.default_rng(seed), **kwargs)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


# ----------------------------------------------------------------------------- proportions

def wilson(k, n, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials, as shares (:func:`scipy.stats.binomtest`);
    never zero width for n ≥ 1, also at 0% and 100% (e.g. 0 of 11: 0–0.26); NaN, NaN when n = 0."""
    if not n:
        return float("nan"), float("nan")
    ci = _st.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def proportion(k, n, level: float = 0.95, scale: float = 100.0) -> tuple[float, float, float]:
    """``(share, low, high)`` ×``scale`` (percent by default) with the :func:`wilson` interval; NaNs when n = 0."""
    if not n:
        return float("nan"), float("nan"), float("nan")
    low, high = wilson(k, n, level)
    return scale * int(k) / int(n), scale * low, scale * high


def at_chance(accuracy: float, n: int, chance: float = 0.5, level: float = 0.95) -> bool:
    """Whether a pairwise accuracy on ``n`` pairs is within the Wilson interval (95%) of ``chance``, i.e.
    cannot be told from guessing; True when there are no pairs."""
    if not n:
        return True
    low, high = wilson(round(accuracy * n), n, level)
    return low <= chance <= high


# ----------------------------------------------------------------------------- kappa

def cohen_kappa_tables(tables: np.ndarray) -> np.ndarray:
    """Cohen's kappa of one or many square count tables (shape ``(..., k, k)``): (p_o − p_e) / (1 − p_e);
    NaN where chance agreement is 1 (one identical label on both sides) or a table is empty."""
    m = np.asarray(tables, dtype=np.float64)
    n = m.sum(axis=(-1, -2))
    with np.errstate(invalid="ignore", divide="ignore"):
        po = np.trace(m, axis1=-2, axis2=-1) / n
        pe = (m.sum(axis=-1) * m.sum(axis=-2)).sum(axis=-1) / n ** 2
        return np.where(pe < 1, (po - pe) / (1 - pe), np.nan)


def cohen_kappa(a, b=None, weights: str | None = None, *, labels=None) -> float:
    """Cohen's kappa, the one used everywhere (consistency, judge panels, human annotators):
    (p_o − p_e) / (1 − p_e).

    ``cohen_kappa(table)``: a square table of counts (rows one annotator, columns the other).
    ``cohen_kappa(a, b, weights=None|"linear"|"quadratic", labels=None)``: two annotators' answers to the
    same items (scikit-learn's ``cohen_kappa_score``); weighted kappa needs whole numbers, and its
    categories are every whole number from the smallest to the largest answer (or ``labels``), so a
    score nobody used still counts as a step.

    **Degenerate case**: NaN when there is nothing to compare (no items, an empty table) and when chance
    agreement is 1 — both annotators gave one and the same label to every item — where kappa is 0/0 and
    undefined (not 1: agreement that chance alone guarantees says nothing about the annotators).
    """
    if b is None:
        m = np.asarray(a, dtype=np.float64)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"cohen_kappa(table) needs a square table of counts, got shape {m.shape}")
        if m.sum() == 0:
            return float("nan")
        return float(cohen_kappa_tables(m))
    import warnings

    from sklearn.metrics import cohen_kappa_score

    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa needs answers to the same items ({len(a)} vs {len(b)})")
    if not a or len(set(map(str, a + b))) == 1:
        return float("nan")
    if weights is None:
        a, b = [str(x) for x in a], [str(x) for x in b]
        labels = None if labels is None else [str(x) for x in labels]
    else:
        a, b = [int(x) for x in a], [int(x) for x in b]
        labels = list(range(min(a + b), max(a + b) + 1)) if labels is None else list(labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(cohen_kappa_score(a, b, weights=weights, labels=labels))


# ----------------------------------------------------------------------------- words

def words(text: object) -> int:
    """Length of a text in whitespace-separated words (None/NaN: 0) — the one word counter of sflib: it
    needs no tokenizer and reads the same for every model."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return 0
    return len(str(text).split())


def word_counts(texts) -> "pd.Series":
    """:func:`words` of every text, as an int64 Series (index kept when ``texts`` is a Series)."""
    import pandas as pd

    index = texts.index if isinstance(texts, pd.Series) else None
    return pd.Series([words(t) for t in texts], index=index, dtype="int64")


# ----------------------------------------------------------------------------- 3x3 agreement tables

EQUAL = 2  # index of 'equal' in the (a, b, equal) order of the agreement tables


def agreement_stats(cells: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics of one or many 3x3 count tables given as (..., 9) arrays, rows = ratings, columns =
    rankings, in (a, b, equal) order: consistency (share on the diagonal), consistency excluding ties
    (neither side says equal), Cohen's kappa, and each side's tie rate."""
    cells = np.asarray(cells, dtype=np.float64)
    m = cells.reshape(cells.shape[:-1] + (3, 3))
    n = m.sum(axis=(-1, -2))
    agree = np.trace(m, axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        po = agree / n
        strict = m[..., :2, :2]  # neither side says equal
        n_strict = strict.sum(axis=(-1, -2))
        excl = np.trace(strict, axis1=-2, axis2=-1) / n_strict
        return {"consistency": po, "consistency_excluding_ties": excl, "kappa": cohen_kappa_tables(m),
                "ratings_tie_rate": m[..., EQUAL, :].sum(axis=-1) / n,
                "rankings_tie_rate": m[..., :, EQUAL].sum(axis=-1) / n}


def percentile_intervals(draws: np.ndarray, statistic: Callable[[np.ndarray], dict] = agreement_stats,
                         level: float = 0.95) -> dict[str, tuple]:
    """Percentile intervals of every statistic over bootstrap replicates of the cells (n_boot x cells);
    replicates where a statistic is undefined (NaN) are left out of its interval."""
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out = {}
    for key, values in statistic(draws).items():
        v = values[~np.isnan(values)]
        out[key] = (float(np.percentile(v, lo)), float(np.percentile(v, hi))) if len(v) else (np.nan, np.nan)
    return out


def multinomial_draws(cells: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` bootstrap replicates of the cell counts from resampling the ``cells.sum()`` items
    with replacement (= multinomial draws with the observed cell shares)."""
    n = int(np.sum(cells))
    return rng.multinomial(n, np.asarray(cells) / n, size=n_boot)


def cluster_draws(per_cluster: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` replicates of the cell counts from resampling whole clusters (rows of ``per_cluster``,
    shape clusters x cells) with replacement: times-drawn weights @ per-cluster counts."""
    n_clusters, width = per_cluster.shape
    draws = np.empty((n_boot, width), dtype=np.int64)
    chunk = max(1, 2_000_000 // n_clusters)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n_clusters, size=(b, n_clusters)) + n_clusters * np.arange(b)[:, None]
        weights = np.bincount(idx.ravel(), minlength=b * n_clusters).reshape(b, n_clusters)  # times drawn
        draws[start:start + b] = weights @ per_cluster
    return draws


def cells_bootstrap(cells: np.ndarray, n_boot: int, rng: np.random.Generator, level: float = 0.95,
                    statistic: Callable[[np.ndarray], dict] = agreement_stats) -> dict[str, tuple]:
    """Percentile intervals of ``statistic`` from resampling the items behind the cell counts."""
    if n_boot <= 0 or int(np.sum(cells)) == 0:
        return {k: (np.nan, np.nan) for k in statistic(np.asarray(cells))}
    return percentile_intervals(multinomial_draws(cells, n_boot, rng), statistic, level)


def cluster_bootstrap(per_cluster: np.ndarray, n_boot: int, rng: np.random.Generator, level: float = 0.95,
                      statistic: Callable[[np.ndarray], dict] = agreement_stats) -> dict[str, tuple]:
    """Percentile intervals of ``statistic`` from resampling whole clusters (e.g. instructions)."""
    if n_boot <= 0 or len(per_cluster) == 0:
        return {k: (np.nan, np.nan) for k in statistic(np.zeros(per_cluster.shape[-1]))}
    return percentile_intervals(cluster_draws(per_cluster, n_boot, rng), statistic, level)
