"""sflib.core.stats: the one statistics module consistency and evaluation share."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from sflib import consistency, evaluation
from sflib.core import stats


def test_one_implementation_is_used_by_both_stages():
    assert evaluation.ci_sem is stats.ci_sem and evaluation.bootstrap_ci is stats.bootstrap_ci
    assert consistency.cohen_kappa is stats.cohen_kappa


def test_wilson_interval_and_at_chance():
    low, high = stats.wilson(7, 10)
    ci = st.binomtest(7, 10).proportion_ci(method="wilson")
    assert (low, high) == pytest.approx((ci.low, ci.high))
    # by hand: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    z, n, p = st.norm.ppf(0.975), 10, 0.7
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (low, high) == pytest.approx((centre - half, centre + half))
    assert all(math.isnan(x) for x in stats.wilson(0, 0))
    # 0.6 on 20 pairs cannot be told from a coin; 0.6 on 2,000 pairs can; 0.4 on 2,000 is below chance
    assert stats.at_chance(0.6, 20) and not stats.at_chance(0.6, 2000) and not stats.at_chance(0.4, 2000)
    assert stats.at_chance(0.0, 0)  # no pairs: nothing shows it is better than chance
    assert not stats.at_chance(0.75, 40) and stats.at_chance(0.75, 40, chance=0.7)


def test_the_stages_use_the_one_implementation():
    from sflib.plots import feedback

    assert feedback.wilson is stats.wilson


def test_sem_interval_is_the_papers():
    values = [1.0, 0.5, 0.0, 1.0, 1.0]
    m = sum(values) / 5
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / 4)
    assert stats.sem(values) == pytest.approx(sd / math.sqrt(5))
    assert stats.ci_sem(values) == pytest.approx(1.96 * sd / math.sqrt(5))
    mean, half = stats.mean_ci(values)
    assert (mean, half) == pytest.approx((100 * m, 100 * 1.96 * sd / math.sqrt(5)))
    assert math.isnan(stats.ci_sem([1.0])) and math.isnan(stats.sem([]))
    assert math.isnan(stats.mean_ci([])[0])


def test_bootstrap_ci_is_scipys_percentile_bootstrap():
    v = np.random.default_rng(3).choice([0.0, 0.5, 1.0], size=150)
    lo, hi = stats.bootstrap_ci(v, n_boot=400, seed=11)
    kwargs = dict(n_resamples=400, confidence_level=0.95, method="percentile", vectorized=True)
    try:
        ref = st.bootstrap((v,), np.mean, rng=np.random.default_rng(11), **kwargs)
    except TypeError:
        ref = st.bootstrap((v,), np.mean, random_state=np.random.default_rng(11), **kwargs)
    assert (lo, hi) == (ref.confidence_interval.low, ref.confidence_interval.high)
    assert stats.bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)


def test_kappa_any_size_and_vectorised():
    two = np.array([[20, 5], [10, 15]])          # po .7, pe (25*30 + 25*20)/2500 = .5
    assert stats.cohen_kappa(two) == pytest.approx(0.4)
    tables = np.random.default_rng(0).integers(0, 20, size=(50, 3, 3))
    many = stats.cohen_kappa_tables(tables)
    assert many == pytest.approx([stats.cohen_kappa(t) for t in tables])
    assert np.isnan(stats.cohen_kappa(np.zeros((3, 3))))
    assert np.isnan(stats.cohen_kappa([[0, 0], [0, 7]]))


def test_agreement_stats_by_hand():
    m = np.array([[10, 2, 3], [1, 8, 1], [4, 0, 6]])
    s = stats.agreement_stats(m.ravel())
    assert float(s["consistency"]) == pytest.approx(24 / 35)
    assert float(s["consistency_excluding_ties"]) == pytest.approx(18 / 21)
    assert float(s["ratings_tie_rate"]) == pytest.approx(10 / 35)
    assert float(s["rankings_tie_rate"]) == pytest.approx(10 / 35)
    assert float(s["kappa"]) == pytest.approx(415 / 800)


def test_multinomial_draws_are_resampled_pairs():
    """Resampling n labelled pairs with replacement = a multinomial draw of the cell counts: same
    mean and covariance of the cells over many replicates."""
    cells = np.array([30, 5, 10, 4, 25, 6, 8, 2, 10])
    rng = np.random.default_rng(0)
    draws = stats.multinomial_draws(cells, 4000, rng)
    assert (draws.sum(axis=1) == cells.sum()).all()
    labels = np.repeat(np.arange(9), cells)
    explicit = np.stack([np.bincount(rng.choice(labels, len(labels)), minlength=9) for _ in range(4000)])
    assert draws.mean(axis=0) == pytest.approx(explicit.mean(axis=0), abs=0.35)
    assert draws.std(axis=0) == pytest.approx(explicit.std(axis=0), rel=0.1)


def test_cluster_draws_resample_whole_clusters():
    per = np.array([[3, 0, 0, 0, 0, 0, 0, 0, 1], [0, 2, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0, 0]])
    a = stats.cluster_draws(per, 7, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    idx = rng.integers(0, 3, size=(7, 3))
    expected = np.stack([per[i].sum(axis=0) for i in idx])
    assert (a == expected).all()
    # one pair per cluster: the cluster bootstrap is the pair bootstrap
    ci = stats.cluster_bootstrap(np.eye(9, dtype=np.int64)[[0, 0, 4, 4, 8, 1]], 500, np.random.default_rng(1))
    lo, hi = ci["consistency"]
    assert 0 <= lo < 4 / 6 < hi <= 1


def test_empty_or_no_resamples_give_nan_intervals():
    out = stats.cells_bootstrap(np.zeros(9), 100, np.random.default_rng(0))
    assert all(math.isnan(lo) and math.isnan(hi) for lo, hi in out.values())
    out = stats.cluster_bootstrap(np.zeros((0, 9), dtype=np.int64), 100, np.random.default_rng(0))
    assert set(out) == {"consistency", "consistency_excluding_ties", "kappa", "ratings_tie_rate", "rankings_tie_rate"}


def test_wilson_never_zero_width_at_0_and_100_percent():
    lo, hi = stats.wilson(0, 11)
    assert lo == 0 and 0.2 < hi < 0.3           # "0.0 0.0" for n = 11 before
    lo, hi = stats.wilson(2, 2)
    assert 0.3 < lo < 0.4 and hi == pytest.approx(1.0)   # "100.0 100.0" for n = 2 before
    assert all(np.isnan(stats.wilson(0, 0)))
    assert stats.proportion(1, 4) == pytest.approx((25.0, 100 * stats.wilson(1, 4)[0], 100 * stats.wilson(1, 4)[1]))
    assert all(np.isnan(stats.proportion(0, 0)))


def test_one_cohen_kappa_everywhere_with_one_degenerate_case():
    from sflib.consistency import agreement
    from sflib.feedback import panels

    assert agreement.cohen_kappa is stats.cohen_kappa and panels.cohen_kappa is stats.cohen_kappa
    a, b = ["y"] * 25 + ["n"] * 25, ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert stats.cohen_kappa(a, b) == pytest.approx(0.4) == stats.cohen_kappa([[20, 5], [10, 15]])
    assert np.isnan(stats.cohen_kappa(["x"] * 3, ["x"] * 3))         # labels: one identical label everywhere
    assert np.isnan(stats.cohen_kappa([[0, 0], [0, 3]]))             # the same case as a table
    assert np.isnan(stats.cohen_kappa([], []))
    with pytest.raises(ValueError, match="square"):
        stats.cohen_kappa([[1, 2, 3]])


def test_one_word_counter():
    assert stats.words("a  b\nc") == 3 and stats.words(None) == 0 and stats.words(float("nan")) == 0
    assert stats.word_counts(["", "one two"]).tolist() == [0, 2]
