"""The one counting rule for ratings and rankings (sflib.feedback.clean), on small tables worked out by hand."""
import pandas as pd
import pytest

from sflib.core.data import DataError
from sflib.feedback import clean
from sflib.feedback.clean import clean_rankings, clean_ratings


def responses(*ids, instruction="i1"):
    return pd.DataFrame({"instruction_id": [instruction] * len(ids), "response_id": list(ids)})


def ratings(rows):
    return pd.DataFrame(rows, columns=["instruction_id", "response_id", "score", "valid", "status"])


def test_ratings_duplicates_invalid_failed_missing_counted_by_name():
    r = ratings([("i1", "r1", 6, True, "ok"), ("i1", "r1", 5, True, "ok"),      # duplicate, another score
                 ("i1", "r2", 4, True, "ok"), ("i1", "r2", 4, True, "ok"),      # duplicate, same score
                 ("i1", "r3", None, False, "invalid"), ("i1", "r4", None, False, "failed"),
                 ("i1", "rX", 3, True, "ok")])                                   # not one of 01's responses
    kept, ex = clean_ratings(r, responses("r1", "r2", "r3", "r4", "r5"))
    assert kept[["response_id", "score"]].values.tolist() == [["r1", 6], ["r2", 4]]  # the first rating is kept
    assert ex == {clean.INVALID: 1, clean.FAILED: 1, clean.DUP_SAME_SCORE: 1, clean.DUP_OTHER_SCORE: 1,
                  clean.FOREIGN_RESPONSE: 1, clean.MISSING_RATING: 3}  # r3, r4 (no valid score) and r5
    assert clean.left_out(ex) == len(r) - len(kept)
    assert clean.describe(ex).startswith("invalid reply: 1; failed request: 1")


def test_ratings_invalid_rating_before_a_valid_one_is_not_a_duplicate():
    r = ratings([("i1", "r1", None, False, "invalid"), ("i1", "r1", 5, True, "ok")])
    kept, ex = clean_ratings(r)
    assert kept["score"].tolist() == [5] and ex[clean.INVALID] == 1 and ex[clean.DUP_SAME_SCORE] == 0


def test_ratings_per_judge_and_without_valid_column():
    r = pd.DataFrame({"instruction_id": ["i"] * 3, "response_id": ["r1", "r1", "r1"], "score": [5, 3, 5],
                      "judge": ["j1", "j2", "j1"]})
    kept, ex = clean_ratings(r)
    assert kept["judge"].tolist() == ["j1", "j2"] and ex[clean.DUP_SAME_SCORE] == 1


def test_ratings_n0_n1_and_all_equal():
    kept, ex = clean_ratings(ratings([]), responses("r1", "r2"))
    assert len(kept) == 0 and ex[clean.MISSING_RATING] == 2 and clean.left_out(ex) == 0
    kept, ex = clean_ratings(ratings([("i1", "r1", 7, True, "ok")]), responses("r1"))
    assert len(kept) == 1 and clean.describe(ex) == "none"
    same = ratings([("i1", f"r{i}", 4, True, "ok") for i in range(5)])
    assert clean_ratings(same)[0]["score"].tolist() == [4] * 5


@pytest.mark.parametrize("bad", [0, 8, 4.5, "good"])
def test_ratings_off_scale_is_bad_input_naming_row_and_field(bad):
    with pytest.raises(DataError, match=r"row 2.*score|score.*row 2"):
        clean_ratings(ratings([("i1", "r1", 5, True, "ok"), ("i1", "r2", bad, True, "ok")]), name="r.jsonl")


def rankings(rows):
    return pd.DataFrame(rows, columns=["instruction_id", "response_id_1", "response_id_2", "decision", "valid", "status"])


def test_rankings_duplicates_in_either_order_flip_the_decision():
    k = rankings([("i1", "r1", "r2", "a", True, "ok"), ("i1", "r2", "r1", "b", True, "ok"),   # same preference
                  ("i1", "r1", "r3", "a", True, "ok"), ("i1", "r3", "r1", "a", True, "ok"),   # the other way round
                  ("i1", "r2", "r3", "equal", True, "ok"), ("i1", "r2", "r3", None, False, "invalid"),
                  ("i1", "r1", "r4", None, False, "failed")])
    kept, ex = clean_rankings(k, responses("r1", "r2", "r3", "r4"))
    assert kept["decision"].tolist() == ["a", "a", "equal"]
    assert ex == {clean.INVALID: 1, clean.FAILED: 1, clean.DUP_SAME_DECISION: 1, clean.DUP_OTHER_DECISION: 1,
                  clean.FOREIGN_PAIR: 0, clean.MISSING_PAIR: 3}  # of 6 pairs: r1-r4, r2-r4, r3-r4 not ranked
    assert clean.left_out(ex) == len(k) - len(kept)


def test_rankings_self_pair_kept_and_counted_foreign_pair_left_out():
    k = rankings([("i1", "r1", "r1", "equal", True, "ok"), ("i1", "r1", "r9", "a", True, "ok"),
                  ("i2", "r1", "r2", "b", True, "ok")])
    kept, ex = clean_rankings(k, responses("r1", "r2"))
    assert len(kept) == 1 and clean.rankings_notes(kept) == {"pairs of a response with an identical copy of itself": 1}
    assert ex[clean.FOREIGN_PAIR] == 2 and ex[clean.MISSING_PAIR] == 1


def test_rankings_original_labels_and_unknown_label():
    kept, _ = clean_rankings(rankings([("i1", "r1", "r2", "(a)", True, "ok")]))
    assert kept["decision"].tolist() == ["a"]
    with pytest.raises(DataError, match="unknown decision label 'maybe'"):
        clean_rankings(rankings([("i1", "r1", "r2", "a", True, "ok"), ("i1", "r1", "r3", "maybe", True, "ok")]))


def test_rankings_n0():
    kept, ex = clean_rankings(rankings([]), responses("r1", "r2", "r3"))
    assert len(kept) == 0 and ex[clean.MISSING_PAIR] == 3


def test_paper_study_counts():
    """The paper's released sample: 97 of 98 responses rated (2 conflicting duplicates), 118 ranked pairs."""
    from sflib.consistency import load_vendored

    r, k = load_vendored("sample")
    kept_r, ex_r = clean_ratings(r)
    kept_k, ex_k = clean_rankings(k)
    assert (len(r), len(kept_r), ex_r[clean.DUP_OTHER_SCORE]) == (99, 97, 2)
    assert (len(k), len(kept_k), clean.left_out(ex_k)) == (118, 118, 0)
    assert clean.rankings_notes(kept_k)["pairs of a response with an identical copy of itself"] == 2
