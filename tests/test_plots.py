"""sflib.plots outside a kernel (Agg, style, small n, clipping, empty groups) and sflib.core.paper."""
import matplotlib
import numpy as np
import pandas as pd
import pytest

from sflib.core import paper
from sflib import plots
from sflib.plots import style


@pytest.fixture(autouse=True)
def _close():
    yield
    plots.plt.close("all")


def _hatched(ax):
    return [p for p in ax.patches if p.get_hatch()]


def test_agg_outside_a_kernel_and_save_is_quiet(tmp_path):
    assert matplotlib.get_backend().lower() == "agg" and not plots.in_kernel()
    fig = plots.plot_decisions(pd.Series({"a": 4, "b": 4, "equal": 2}))
    saved = plots.save_figure(fig, "d", tmp_path)
    assert [p.name for p in saved] == ["d.png", "d.pdf"] and all(p.stat().st_size > 1000 for p in saved)
    pdf = saved[1].read_bytes()
    assert pdf.startswith(b"%PDF-") and b"/Subtype /Image" not in pdf  # vector, not an embedded bitmap
    assert saved._ipython_display_() is None
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(ValueError, match="plain file stem"):
        plots.save_figure(fig, "../x", tmp_path)


def test_style_is_applied_by_every_plot_function():
    with matplotlib.rc_context({"axes.prop_cycle": matplotlib.cycler(color=["red"]), "font.size": 20}):
        fig = plots.plot_score_distribution(pd.DataFrame({"score": [1, 2, 2, 7], "source": ["x", "x", "y", "y"]}))
    assert fig.get_size_inches()[0] == pytest.approx(style.FULL)
    assert fig.get_layout_engine().__class__.__name__ == "ConstrainedLayoutEngine"
    bar = fig.axes[0].patches[0]
    assert matplotlib.colors.to_hex(bar.get_facecolor()) == style.OKABE_ITO["blue"].lower()
    assert fig.axes[0].title.get_fontsize() == pytest.approx(style.RC["axes.titlesize"])
    assert len(set(style.PALETTE)) == 8


def test_global_style_keeps_tight_layout_quiet():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig, ax = plots.plt.subplots()
        ax.set_title("a cell's own figure")
        fig.tight_layout()
    assert matplotlib.rcParams["axes.prop_cycle"].by_key()["color"][0] == style.PALETTE[0]


def test_score_distribution_drops_empty_and_marks_small_groups():
    df = pd.DataFrame({"score": [3] * 30 + [5] * 4 + [None], "valid": [True] * 34 + [False],
                       "source": ["big"] * 30 + ["tiny"] * 4 + ["empty"]})
    fig = plots.plot_score_distribution(df, min_n=10)
    left, right = fig.axes
    assert left.get_title() == "All rated responses (n=34)"
    labels = [t.get_text() for t in right.get_legend().get_texts()]
    assert labels == ["big (n=30)", "tiny (n=4, few)"]
    assert len(_hatched(right)) == 7 and all(p.get_alpha() == pytest.approx(0.35) for p in _hatched(right))
    one = plots.plot_score_distribution(df[df["source"] == "big"])
    assert len(one.axes) == 1


def test_score_figure_and_ratings_tables_report_the_same_n():
    """Notebook 02: the figure's n, the score table (valid_ratings) and the coverage table (check_judged)
    must count the same ratings, also on the paper's released sample, which rates two responses twice."""
    import re

    from sflib.feedback.ratings import valid_ratings
    from sflib.study.acquire import check_judged
    from sflib.study.seed import canonical

    responses, ratings = canonical("sample_responses"), canonical("sample_ratings")
    assert ratings["response_id"].duplicated().sum() == 2  # the case this test is about
    valid, counts = valid_ratings(ratings)
    _, covered = check_judged(responses, ratings, "ratings")
    fig = plots.plot_score_distribution(ratings, by="source")
    n_figure = int(re.fullmatch(r"All rated responses \(n=(\d+)\)", fig.axes[0].get_title()).group(1))
    assert n_figure == len(valid) == counts["used"] == covered["valid"] == 97
    # and per judge when several judges rate the same responses
    both = pd.concat([ratings.assign(judge="j1"), ratings.assign(judge="j2")], ignore_index=True)
    fig = plots.plot_score_distribution(both, by="judge")
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert fig.axes[0].get_title() == "All rated responses (n=194)" and labels == ["j1 (n=97)", "j2 (n=97)"]


def test_decisions_tie_rate_in_title():
    rk = pd.DataFrame({"decision": ["a"] * 5 + ["b"] * 3 + ["equal"] * 2 + [None], "valid": [True] * 10 + [False]})
    fig = plots.plot_decisions(rk, reference_tie_rate=0.25)
    assert fig.axes[0].get_title().startswith("Decisions on 10 pairs; equal: 20%")
    assert plots.decision_table(rk)["pairs"].tolist() == [5, 3, 2]


def test_position_bias_only_when_measured(capsys):
    pb = {"pairs": 20, "first_pick_rate_12": 0.7, "first_pick_rate_21": 0.6, "first_pick_rate": 0.65,
          "agree": 14, "first_first": 5, "second_second": 1}
    assert plots.plot_position_bias(pb, measured=False) is None
    assert "position bias not shown" in capsys.readouterr().out
    fig = plots.plot_position_bias(pb, measured=True)
    ax = fig.axes[0]
    assert [round(p.get_height()) for p in ax.patches] == [70, 60, 65]
    assert ax.get_ylim() == (0, 100)
    assert any(line.get_linestyle() == "--" and line.get_ydata()[0] == 50 for line in ax.get_lines())


def _winrates(n_small=3):
    return pd.DataFrame({"policy": ["ratings RM", "ratings RM", "rankings RM", "rankings RM", "empty", "empty"],
                         "protocol": ["rating", "ranking"] * 3, "winrate": [100.0, 40.0, 55.0, 60.0, np.nan, np.nan],
                         "ci_sem": [30.0, 60.0, 5.0, 5.0, np.nan, np.nan], "n": [n_small, 50, 80, 80, 0, 0],
                         "reference": ["davinci-003"] * 6})


def test_winrates_clip_error_bars_and_mark_small_n():
    fig = plots.plot_winrates(_winrates(), min_n=10)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ratings RM", "rankings RM"]  # empty policy dropped
    assert ax.get_ylim() == (0, 100)
    tops = [seg[:, 1].max() for coll in ax.collections for seg in coll.get_segments()]
    bottoms = [seg[:, 1].min() for coll in ax.collections for seg in coll.get_segments()]
    assert max(tops) <= 100 and min(bottoms) >= 0
    assert len(_hatched(ax)) == 1 and _hatched(ax)[0].get_height() == 100
    assert any(line.get_ydata()[0] == 50 for line in ax.get_lines())
    texts = [t.get_text() for t in ax.texts]
    assert "n=3" in texts and "n=50" in texts


def test_winrates_by_dataset_drops_empty_datasets():
    rows = []
    for ds, n in [("helpful_base", 12), ("koala", 0), ("oasst", 2)]:
        for proto in ("rating", "ranking"):
            rows.append({"dataset": ds, "protocol": proto, "policy": "p", "winrate": 50.0 if n else np.nan,
                         "ci_sem": 70.0 if n else np.nan, "n": n})
    fig = plots.plot_winrates_by_dataset(pd.DataFrame(rows))
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["helpful_base", "oasst"]
        assert ax.get_ylim() == (0, 100)


def test_rm_accuracy_chance_line_and_interval():
    fig = plots.plot_rm_accuracy({"ratings": (0.47, 17), "rankings": {"accuracy": 0.59, "n": 17}, "none": (0, 0)})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ratings", "rankings"]
    assert any(line.get_ydata()[0] == 0.5 for line in ax.get_lines())
    seg = ax.collections[0].get_segments()[0]
    assert seg[:, 1].min() < 0.47 < seg[:, 1].max() and seg[:, 1].min() < 0.5  # chance inside the interval
    assert any("(n=17)" in t.get_text() for t in ax.texts)


def test_consistency_plots_drop_empty_groups_and_length_bins():
    by_gap = pd.DataFrame({"gap": [0, 1, 6], "n": [40, 3, 0], "consistency": [0.3, 0.6, np.nan],
                           "ci_low": [0.2, 0.2, np.nan], "ci_high": [0.4, 0.9, np.nan],
                           "one_side_equal": [0.6, 0.2, np.nan], "opposite": [0.1, 0.2, np.nan]})
    fig = plots.plot_consistency_by_gap(by_gap, overall=0.4)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "1"]
    assert len(_hatched(fig.axes[0])) == 1
    pairs = pd.DataFrame({"agree": [True, False, False, True, False] * 6,
                          "length_diff": [1, 2, 3, 30, 40] * 6})
    fig = plots.plot_disagreement_vs_length(pairs, bins=(0, 10, 25, 1000, np.inf))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0–9", "25–999"]  # the empty 10-24 and ≥1000 bins dropped
    assert [round(p.get_height()) for p in ax.patches] == [67, 50]
    with pytest.raises(ValueError, match="length_diff"):
        plots.plot_disagreement_vs_length(pairs[["agree"]])
    texts = pd.DataFrame({"agree": [True, False], "response1": ["a b c", "a"], "response2": ["a", "a b"]})
    assert plots.plot_disagreement_vs_length(texts, min_n=1) is not None


def test_paper_table_and_paper_vs_ours():
    t = paper.table("consistency")
    assert list(t.columns) == ["quantity", "paper_value", "source"] and len(t) >= 1
    assert all(s.startswith("arXiv:2308.15812v3") for s in t["source"])
    assert set(t.attrs["notes"]) == set(t["quantity"])
    assert list(paper.table("evaluation").columns) == ["quantity", "paper_value", "source"]
    with pytest.raises(KeyError, match="unknown topic"):
        paper.table("nonsense")
    q = t["quantity"].iloc[0]
    both = paper.paper_vs_ours({q: (55.0, 48.0, 62.0), "our extra (%)": 10.0}, "consistency")
    row = both.set_index("quantity").loc[q]
    assert (row["paper_value"], row["ours"], row["ours_low"], row["ours_high"]) == (60.0, 55.0, 48.0, 62.0)
    assert both.set_index("quantity").loc["our extra (%)", "source"] == "not stated in the paper"
    assert len(both) == len(t) + 1
    fig = plots.plot_paper_vs_ours(both)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][:2] == [q, "our extra (%)"]


def test_every_other_plot_function_renders(tmp_path):
    counts = pd.DataFrame({"sample": [3, 2], "evaluation": [1, 0]}, index=pd.Index(["dolly", "sinstruct"], name="source"))
    lengths = pd.DataFrame({"kind": ["response"] * 6, "collection": ["a"] * 3 + ["b"] * 3, "words": [1, 5, 9, 2, 4, 40]})
    responses = pd.DataFrame({"instruction_id": ["i1", "i1", "i2"], "instruction": ["x" * 50, "x" * 50, "y"],
                              "response": ["a b", "a b c", "d"], "finish_reason": ["length", "stop", "length"]})
    hist = [{"loss": 1.0, "step": 1}, {"eval_loss": 0.9, "step": 1}, {"loss": 0.5, "step": 2}]
    scored = pd.DataFrame({"score": [1, 4, 7, 7], "ratings_reward": [0.1, 0.2, 0.3, 0.2], "rankings_reward": [0, 1, 2, 3]})
    curve = pd.DataFrame({"m": [1, 2, 4], "selected": [0.1, 0.2, 0.3], "selected_sem": [0.01] * 3, "expected": [0.1, 0.18, 0.25]})
    agree = pd.DataFrame({"m": [1, 2, 4], "same_sample": [1.0, 0.6, 0.4], "chance": [1.0, 0.5, 0.25]})
    by_m = pd.DataFrame({"selector": ["all samples"] * 2 + ["ratings RM"] * 2, "m": [1, 2, 1, 2],
                         "mean_words": [50, 50, 50, 60], "sem_words": [0, 0, 2, 3]})
    gens = pd.DataFrame({"generator": ["policy", "reference"], "mean_words": [80.0, 120.0], "n": [20, 20]})
    buckets = pd.DataFrame({"policy": ["p"] * 3, "protocol": ["rating"] * 3, "bucket": ["<0.8", "0.8–1.25", ">1.25"],
                            "n": [2, 15, 0], "winrate": [100.0, 40.0, np.nan], "ci_sem": [0.0, 30.0, np.nan]})
    figs = {
        "counts": plots.plot_source_counts(counts),
        "lengths": plots.plot_length_distributions(lengths, "response"),
        "responses": plots.plot_response_lengths(responses, max_new_tokens=64),
        "loss": plots.plot_rm_loss_curves({"ratings": hist, "rankings": hist}),
        "rewards": plots.plot_rewards_by_score(scored),
        "best": plots.plot_best_of_m({"ratings RM": curve}),
        "agree": plots.plot_rm_agreement(agree),
        "length_bias": plots.plot_length_bias(by_m, truncated_share=0.94),
        "length_analysis": plots.plot_length_analysis(gens, buckets),
    }
    assert "2 of 3 stopped at the 64-token limit" in figs["responses"]._suptitle.get_text()
    assert "94% of samples cut" in " ".join(t.get_text() for t in figs["length_bias"].axes[0].texts)
    right = figs["length_analysis"].axes[1]
    assert right.get_ylim() == (0, 100) and "favour" not in figs["length_analysis"]._suptitle.get_text()
    for name, fig in figs.items():
        assert fig.get_size_inches()[0] in (pytest.approx(style.COLUMN), pytest.approx(style.FULL)), name
        assert all(p.stat().st_size > 1000 for p in plots.save_figure(fig, name, tmp_path))


def test_winrate_legend_is_not_hatched_by_a_small_bar():
    fig = plots.plot_winrates(_winrates(), min_n=10)
    handles = fig.axes[0].get_legend().legend_handles
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["rating protocol", "ranking protocol", "50%: tie with the reference"]
    assert not any(getattr(h, "get_hatch", lambda: None)() for h in handles)


def test_save_figure_of_nothing_saves_nothing(tmp_path):
    from sflib import plots

    assert list(plots.save_figure(None, "empty", tmp_path)) == []
    assert not list(tmp_path.iterdir())
