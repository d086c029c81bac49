"""Plotting for the notebooks, one module per stage, one style (:mod:`sflib.plots.style`).

``from sflib import plots`` then ``plots.plot_x(...)`` and ``plots.save_figure(fig, name, folder)``:
in a notebook each saved figure is shown inline once and written as PNG and PDF under
``figures/``; outside a kernel matplotlib uses Agg. ``plots.plt`` is ``matplotlib.pyplot``.
"""
from __future__ import annotations

from .figures import configure_backend, in_kernel, save_figure, SavedFigure, study_figures_dir  # backend before pyplot

configure_backend()

import matplotlib.pyplot as plt  # noqa: E402

from . import style  # noqa: E402
from .best_of_n import plot_best_of_m, plot_length_bias, plot_rm_agreement  # noqa: E402
from .common import MIN_N  # noqa: E402
from .consistency import (plot_consistency_by_gap, plot_consistency_by_group, plot_consistency_matrices,  # noqa: E402
                          plot_disagreement_vs_length)
from .data import plot_length_distributions, plot_response_lengths, plot_source_counts  # noqa: E402
from .evaluation import plot_length_analysis, plot_paper_vs_ours, plot_winrates, plot_winrates_by_dataset  # noqa: E402
from .feedback import decision_table, plot_decisions, plot_position_bias, plot_score_distribution  # noqa: E402
from .reward_models import plot_rewards_by_score, plot_rm_accuracy, plot_rm_loss_curves  # noqa: E402

style.apply()

__all__ = [
    "plt", "style", "save_figure", "study_figures_dir", "SavedFigure", "in_kernel", "configure_backend", "MIN_N",
    "plot_source_counts", "plot_length_distributions", "plot_response_lengths",
    "plot_score_distribution", "plot_decisions", "plot_position_bias", "decision_table",
    "plot_consistency_matrices", "plot_consistency_by_gap", "plot_consistency_by_group", "plot_disagreement_vs_length",
    "plot_rm_loss_curves", "plot_rewards_by_score", "plot_rm_accuracy",
    "plot_best_of_m", "plot_rm_agreement", "plot_length_bias",
    "plot_winrates", "plot_winrates_by_dataset", "plot_length_analysis", "plot_paper_vs_ours",
]
