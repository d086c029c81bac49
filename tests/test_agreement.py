"""Agreement measures against hand-computed values, and the human-vs-AI table."""
import numpy as np
import pandas as pd
import pytest

from human_fixtures import responses
from sflib.consistency import agreement
from sflib import consistency, human
from sflib.feedback.store import AnnotationStore

A = ["a", "a", "a", "b", "b", "b", "equal", "equal", "a", "b"]
B = ["a", "a", "b", "b", "b", "a", "equal", "a", "a", "b"]


def test_cohen_kappa_by_hand():
    # po = 7/10; marginals A a4 b4 e2, B a5 b4 e1 -> pe = (20 + 16 + 2) / 100 = .38; (0.7 - .38) / .62
    assert agreement.cohen_kappa(A, B) == pytest.approx(0.32 / 0.62)
    assert agreement.cohen_kappa(A, A) == pytest.approx(1.0)
    # quadratic weights on scores: sum w*O = 1/3, sum w*E = 5/3 -> 1 - 0.2
    assert agreement.cohen_kappa([1, 2, 3], [1, 3, 3], weights="quadratic") == pytest.approx(0.8)
    # a category nobody used still counts as a step: 1 vs 3 is two steps apart, not one
    assert agreement.cohen_kappa([1, 3, 3, 1], [1, 3, 1, 3], weights="linear") == pytest.approx(
        agreement.cohen_kappa([1, 3, 3, 1], [1, 3, 1, 3], weights="linear", labels=range(1, 8)))
    with pytest.raises(ValueError, match="same items"):
        agreement.cohen_kappa([1, 2], [1])


def test_fleiss_kappa_by_hand():
    table = pd.DataFrame({"r1": ["a", "a", "b", "a"], "r2": ["a", "a", "b", "b"], "r3": ["a", "b", "b", "equal"]})
    # P_i = 1, 1/3, 1, 0 -> mean 7/12; p = 6/12, 5/12, 1/12 -> Pe = 62/144; (7/12 - 62/144) / (82/144) = 11/41
    assert agreement.fleiss_kappa(table) == pytest.approx(11 / 41)
    with_missing = pd.concat([table, pd.DataFrame({"r1": ["a"], "r2": [np.nan], "r3": ["b"]})], ignore_index=True)
    assert agreement.fleiss_kappa(with_missing) == pytest.approx(11 / 41)  # only items everyone judged


def test_krippendorff_alpha_by_hand():
    table = pd.DataFrame({"r1": ["a", "a", "b", "a"], "r2": ["a", "a", "b", "b"], "r3": ["a", "b", "b", "equal"]})
    # coincidences: n_a 6, n_b 5, n_e 1 (n 12), disagreeing 5 -> 1 - 11 * 5 / (144 - 62) = 27/82
    assert agreement.krippendorff_alpha(table, "nominal") == pytest.approx(27 / 82)
    scores = pd.DataFrame({"r1": [1, 2, 3, 1], "r2": [1, 3, 3, 2]})
    # ordinal: n1 3, n2 2, n3 3; delta2(1,2) = delta2(2,3) = 2.5^2, delta2(1,3) = 5^2 -> 1 - 7 * 25 / 600
    assert agreement.krippendorff_alpha(scores, "ordinal") == pytest.approx(17 / 24)
    missing = scores.assign(r3=[np.nan, np.nan, np.nan, np.nan])
    assert agreement.krippendorff_alpha(missing, "ordinal") == pytest.approx(17 / 24)
    assert np.isnan(agreement.krippendorff_alpha(scores[["r1"]], "ordinal"))


def test_agreement_table_from_human_feedback(tmp_path):
    items = human.rating_items(responses(4, 3))
    st = AnnotationStore(tmp_path / "s.sqlite")
    answers = {"ann": [1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4, 5], "bob": [1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4, 6]}
    for name, scores in answers.items():
        s = human.AnnotationSession(items, name, st, "ratings")
        while not s.done:
            s.answer(scores[items.index[items["item_id"] == s.current()["item_id"]][0]])
        s.close()
    frames = {n: human.human_feedback(st, n, "ratings") for n in answers}
    table = agreement.judgment_table(frames, "ratings")
    assert table.shape == (12, 2) and table.loc[items["item_id"], "ann"].tolist() == answers["ann"]
    out = agreement.agreement_table(frames, "ratings").set_index("measure")
    expected = agreement.cohen_kappa(answers["ann"], answers["bob"])
    assert out.loc["Cohen's kappa (unweighted)", "value"] == pytest.approx(expected)
    assert out.loc["Cohen's kappa (unweighted)", "value"] == pytest.approx((11 / 12 - 21 / 144) / (1 - 21 / 144))
    assert out.loc["Krippendorff's alpha (ordinal)", "n_items"] == 12
    assert 0.9 < out.loc["Cohen's kappa (quadratic weights, ordinal)", "value"] < 1.0
    st.close()


@pytest.mark.filterwarnings("ignore::sflib.consistency.ConsistencyWarning")
def test_human_vs_ai_calls_the_consistency_report():
    ratings, rankings = consistency.load_vendored("sample")
    some = rankings.head(30)
    ids = set(some["response_id_1"]) | set(some["response_id_2"])
    h_r = ratings[ratings["response_id"].isin(ids)].copy()
    h_r["score"] = 8 - h_r["score"]  # a contrary human
    table = agreement.human_vs_ai({"contrary": (h_r, some)}, {"gpt": (ratings, rankings)}, bootstrap=50, seed=1)
    assert list(table["judge"]) == ["contrary", "gpt", "gpt"]
    assert list(table["pairs"]) == ["own", "all", "same as humans"]
    full = consistency.report(ratings, rankings, bootstrap=0)
    same = consistency.report(ratings, some, bootstrap=0)
    mine = consistency.report(h_r, some, bootstrap=0)
    assert table["consistency"].tolist() == pytest.approx([mine.consistency, full.consistency, same.consistency])
    assert table["n_compared"].tolist() == [mine.n_compared, full.n_compared, same.n_compared]
    assert set(table.attrs["reports"]) == {"contrary", "gpt", "gpt (same pairs as humans)"}


@pytest.mark.filterwarnings("ignore::sflib.consistency.ConsistencyWarning")
def test_human_vs_ai_keeps_a_row_for_an_ai_judge_with_nothing_comparable():
    """A noisy AI judge (every rating unparsable) gives a row with n 0 and the reason, not an exception."""
    ratings, rankings = consistency.load_vendored("sample")
    some = rankings.head(30)
    ids = set(some["response_id_1"]) | set(some["response_id_2"])
    h_r = ratings[ratings["response_id"].isin(ids)].copy()
    noisy = ratings.assign(score=np.nan, valid=False, status="invalid", error="unparsable reply")
    table = agreement.human_vs_ai({"ann": (h_r, some)}, {"noisy": (noisy, rankings)}, bootstrap=0)
    assert list(table["judge"]) == ["ann", "noisy"]
    row = table.set_index("judge").loc["noisy"]
    assert row["n_compared"] == 0 and np.isnan(row["consistency"]) and "no valid ratings" in row["note"]
    assert set(table.attrs["reports"]) == {"ann"}
