"""Stage 04 — consistency: how often do ratings and rankings feedback agree on the same pair?

For every ranked pair ``(response1, response2)`` whose two responses both have a rating, the ratings
imply a preference — ``a`` if score1 > score2, ``b`` if score1 < score2, ``equal`` if the scores are
equal — and the pair's rankings decision is compared with it. *Consistency* is the share of compared
pairs where the two agree (the paper: they disagree about 60% of the time).

The definition is that of the original consistency script, made explicit:

- a response is identified by its instruction + input + text (here: the ``instruction_id`` and
  ``response_id`` hashes of :mod:`sflib.core.data`, so the lookup is a vectorised join, not a row loop);
- **duplicate rows count once, the first occurrence wins**: a response rated twice keeps its first
  score (the vendored sample has two such responses, rated 6 then 5 and 5 then 4), and a pair ranked
  twice in the same order keeps its first decision. ``(r1, r2)`` and ``(r2, r1)`` are different rows;
- a pair is **skipped** when either response has no (valid) rating; skipped pairs are counted
  (``n_skipped_missing_rating``; ``n_skipped_invalid_rating`` of them because the response's
  rating is stored invalid) and a warning names one of them; ratings with no valid score
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

``verdicts="soft"`` uses the judges' logprob-weighted columns instead (``expected_score`` on ratings,
``p_a`` on rankings; definition in :mod:`sflib.feedback.soft_verdicts`), falling back to the hard verdicts
with a note where they are missing.

The pieces: :mod:`sflib.consistency.compare` (loading, the vectorised comparison),
:mod:`sflib.consistency.report` (the report, breakdowns, annotators side by side, example pairs),
:mod:`sflib.core.stats` (kappa, the bootstraps); this module re-exports them; the ``consistency`` command is in
:mod:`sflib.consistency.cli`.
"""
from __future__ import annotations

from .compare import (RANKINGS_COLUMNS, RATINGS_INDEX, VENDORED, ConsistencyWarning, agreement_matrix,
                      compare, load_rankings, load_ratings, load_vendored)
from .report import (RESAMPLE, ConsistencyReport, compare_annotators, opposite_preferences,
                     rated_differently, report, response_words)
from ..feedback.soft_verdicts import VERDICTS
from ..core.stats import cohen_kappa

__all__ = [
    "ConsistencyReport", "ConsistencyWarning", "compare", "report", "compare_annotators",
    "cohen_kappa", "agreement_matrix", "load_ratings", "load_rankings", "load_vendored",
    "opposite_preferences", "rated_differently", "response_words",
]
