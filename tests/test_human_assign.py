"""Assignment of items to several annotators: overlap, determinism, balance, recorded pair order."""
import pandas as pd
import pytest

from human_fixtures import responses
from sflib import human


def test_overlap_share_and_per_item_count():
    items = human.rating_items(responses(20, 3))
    plan = human.assign(items, ["ann", "bob", "cy"], kind="ratings", overlap=0.3, per_item=2, seed=1)
    per_item = plan.groupby("item_id")["annotator"].nunique()
    assert set(per_item.index) == set(items["item_id"])  # every item is assigned
    per_instruction = plan.merge(items[["item_id", "instruction_id"]]).groupby("instruction_id")["annotator"]
    counts = per_instruction.apply(lambda s: frozenset(s))
    assert sorted(len(c) for c in counts).count(2) == 6 and sorted(len(c) for c in counts).count(1) == 14
    # all responses of one instruction go to the same annotators
    assert (plan.merge(items[["item_id", "instruction_id"]]).groupby(["instruction_id", "annotator"]).size() == 3).all()
    assert plan.groupby("item_id")["overlap"].first().sum() == 18
    assert (plan["overlap"] == plan["item_id"].map(per_item > 1)).all()
    units = plan.merge(items[["item_id", "instruction_id"]]).groupby("annotator")["instruction_id"].nunique()
    assert units.max() - units.min() <= 1  # 26 instruction shares over 3 people: 9, 9, 8
    assert not plan.duplicated(["annotator", "item_id"]).any()


def test_deterministic_and_per_annotator_order():
    items = human.rating_items(responses(10, 3))
    a = human.assign(items, ["ann", "bob"], kind="ratings", overlap=1.0, seed=3)
    b = human.assign(items, ["Ann", " bob "], kind="ratings", overlap=1.0, seed=3)
    pd.testing.assert_frame_equal(a, b)
    c = human.assign(items, ["ann", "bob"], kind="ratings", overlap=1.0, seed=4)
    assert not a.equals(c)
    ann = a[a["annotator"] == "ann"].sort_values("position")["item_id"].tolist()
    bob = a[a["annotator"] == "bob"].sort_values("position")["item_id"].tolist()
    assert sorted(ann) == sorted(bob) == sorted(items["item_id"])  # overlap 1: both see everything
    assert ann != bob  # each in their own random order
    assert ann != items["item_id"].tolist()


def test_ratings_and_rankings_of_an_instruction_go_to_the_same_people():
    resp = responses(12, 3)
    r = human.assign(human.rating_items(resp), ["ann", "bob", "cy"], kind="ratings", overlap=0.5, seed=0)
    p_items = human.ranking_items(resp)
    k = human.assign(p_items, ["ann", "bob", "cy"], kind="rankings", overlap=0.5, seed=0)
    who = lambda plan, items: (plan.merge(items[["item_id", "instruction_id"]])  # noqa: E731
                               .groupby("instruction_id")["annotator"].apply(frozenset))
    pd.testing.assert_series_equal(who(r, human.rating_items(resp)), who(k, p_items))


def test_pair_order_is_random_recorded_and_a_share_asked_in_both_orders():
    items = human.ranking_items(responses(10, 4))  # 60 pairs
    plan = human.assign(items, ["ann", "bob"], kind="rankings", overlap=0.5, both_orders=0.5, seed=2)
    assert set(plan["order"]) == {"12", "21"}
    for name, mine in plan.groupby("annotator"):
        mine = mine.sort_values("position")
        n_orders = mine.groupby("item_id")["order"].nunique()
        twice = set(n_orders[n_orders == 2].index)
        shared = set(mine.loc[mine["overlap"], "item_id"])
        assert twice <= shared and len(twice) == round(0.5 * len(shared))
        for item in twice:  # the second showing comes later, in the second half of the queue
            pos = mine.loc[mine["item_id"] == item, "position"].tolist()
            assert pos[1] > pos[0] and pos[1] >= (len(mine) - len(twice)) // 2
        share_12 = (mine.drop_duplicates("item_id")["order"] == "12").mean()
        assert 0.25 < share_12 < 0.75
    # a single annotator without assignment: a share of all pairs twice
    q = human.annotator_queue(items["item_id"], "solo", "rankings", seed=0, both_orders=0.2)
    assert len(q) == 60 + 12 and q.groupby("item_id")["order"].nunique().max() == 2


def test_overlap_extremes_and_bad_arguments():
    items = human.rating_items(responses(6, 2))
    none = human.assign(items, ["a1", "a2", "a3"], kind="ratings", overlap=0.0)
    assert none["item_id"].is_unique and not none["overlap"].any()
    full = human.assign(items, ["a1", "a2", "a3"], kind="ratings", overlap=1.0, per_item=3)
    assert (full.groupby("item_id").size() == 3).all()
    solo = human.assign(items, ["a1"], kind="ratings", overlap=0.5)
    assert len(solo) == len(items) and not solo["overlap"].any()
    by_item = human.assign(items, ["a1", "a2"], kind="ratings", overlap=0.5, by=None)
    assert (by_item.groupby("item_id").size() > 1).sum() == 6
    with pytest.raises(ValueError, match="distinct"):
        human.assign(items, ["Alice", "alice"], kind="ratings")
    with pytest.raises(ValueError, match="between 0 and 1"):
        human.assign(items, ["a1", "a2"], kind="ratings", overlap=1.5)
    with pytest.raises(ValueError, match="annotator name"):
        human.assign(items, ["a1", "b/2"], kind="ratings")
    with pytest.raises(ValueError, match="at least one"):
        human.assign(items, [], kind="ratings")


def test_session_follows_the_assignment():
    from sflib.feedback.store import AnnotationStore

    items = human.rating_items(responses(6, 2))
    plan = human.assign(items, ["a1", "a2"], kind="ratings", overlap=0.5, seed=0)
    st = AnnotationStore(":memory:")
    s = human.AnnotationSession(items, "a2", st, "ratings", assignment=plan)
    mine = plan[plan["annotator"] == "a2"].sort_values("position")
    seen = []
    while not s.done:
        seen.append(s.current()["item_id"])
        s.answer(4)
    assert seen == mine["item_id"].tolist()
    with pytest.raises(ValueError, match="no tasks for annotator 'zed'"):
        human.AnnotationSession(items, "zed", st, "ratings", assignment=plan)
