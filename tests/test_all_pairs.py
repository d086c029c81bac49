"""The vectorised all_pairs (issue 22: pair building at 5,000 instructions) equals the plain loop it replaced."""
from __future__ import annotations

import random

import pandas as pd
import pytest

from sflib.core import data as d


def loop_pairs(responses: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for iid, group in responses.groupby("instruction_id", sort=False):
        g = group.drop_duplicates("response_id").to_dict("records")
        for i in range(len(g)):
            for j in range(i + 1, len(g)):
                rows.append({"instruction_id": iid, "response_id_1": g[i]["response_id"],
                             "response_id_2": g[j]["response_id"], "instruction": g[i]["instruction"],
                             "input": g[i]["input"], "response1": g[i]["response"], "response2": g[j]["response"]})
    return pd.DataFrame(rows, columns=d.RANKING_COLUMNS[:-1])


@pytest.mark.parametrize("seed", range(4))
def test_same_pairs_in_the_same_order(seed):
    rnd = random.Random(seed)
    rows = [{"instruction": f"instruction {rnd.randint(0, 40)}", "input": rnd.choice(["", "x"]),
             "response": f"response {rnd.randint(0, 5)}"} for _ in range(rnd.randint(1, 300))]
    df = d.add_ids(pd.DataFrame(rows))  # repeated responses, one-response instructions, shuffled order
    got, want = d.all_pairs(df), loop_pairs(df)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))


def test_no_pairs():
    df = d.add_ids(pd.DataFrame({"instruction": ["a"], "input": [""], "response": ["r"]}))
    assert d.all_pairs(df).empty and d.all_pairs(df.iloc[:0]).columns.tolist() == d.RANKING_COLUMNS[:-1]


def test_response_length_plot_does_not_grow_with_the_instructions():
    """Notebook 01's length plot is two distributions: its number of drawn elements and labels must not grow
    with a 5,000-instruction study (it drew one labelled row per instruction before)."""
    import matplotlib

    matplotlib.use("Agg")
    from sflib.plots import data as plots_data

    rows = [{"instruction": f"instruction {i}", "input": "", "response": "word " * (s + 1 + i % 7)}
            for i in range(300) for s in range(3)]
    fig = plots_data.plot_response_lengths(d.add_ids(pd.DataFrame(rows)))
    ax2 = fig.axes[1]
    assert len(ax2.patches) <= 40 and not any("instruction" in t.get_text() for t in ax2.get_yticklabels())
    assert "300 with" in ax2.get_title()
