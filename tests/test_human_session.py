"""Bad input for human annotation (same name in two kernels, odd names, a changed item list) and the
human tables having exactly the columns of the AI judge's tables."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from human_fixtures import ConstantJudge, responses
from sflib import consistency, human
from sflib.human import AnnotationSession, AnnotatorBusy
from sflib.feedback.rankings import make_pairs, rank
from sflib.feedback.ratings import rate
from sflib.feedback.store import AnnotationStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    st = AnnotationStore(tmp_path / "annotations.sqlite")
    yield st
    st.close()


@pytest.mark.parametrize("name, expected", [("alice", "alice"), ("  Alice Smith ", "alice-smith"),
                                            ("human:Bob", "bob"), ("r2.d2_x-1", "r2.d2_x-1")])
def test_names_are_normalised(name, expected):
    assert human.normalise_name(name) == expected
    assert human.judge_name(name) == "human:" + expected


@pytest.mark.parametrize("name, words", [("Zoë", ["'ë'", "'zoe'"]), ("a/b", ["'/'"]), ("", ["1-40"]),
                                         ("x" * 41, ["1-40"]), ("-lead", ["start with"]), ("human:", ["1-40"])])
def test_odd_names_get_a_clear_message(name, words, store):
    with pytest.raises(ValueError) as e:
        AnnotationSession(human.rating_items(responses()), name, store, "ratings")
    assert "annotator name" in str(e.value)
    for w in words:
        assert w in str(e.value)
    assert len(store) == 0


def test_same_name_in_two_kernels(store, tmp_path):
    items = human.rating_items(responses())
    code = textwrap.dedent(f"""
        import sys, time
        from sflib.human import AnnotationSession
        from sflib.feedback.store import AnnotationStore
        import pandas as pd
        items = pd.read_json({str(tmp_path / 'items.json')!r})
        s = AnnotationSession(items, "Alice", AnnotationStore({str(tmp_path / 'annotations.sqlite')!r}), "ratings")
        s.answer(6)
        print("ready", flush=True)
        time.sleep(60)
    """)
    items.to_json(tmp_path / "items.json")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    other = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert other.stdout.readline().strip() == "ready"
        with pytest.raises(AnnotatorBusy) as e:
            AnnotationSession(items, "alice", store, "ratings")
        msg = str(e.value)
        assert f"pid {other.pid}" in msg and "force=True" in msg and "'alice'" in msg
        # another kind, or another name, is free
        AnnotationSession(human.ranking_items(responses()), "alice", store, "rankings").close()
        # taking over keeps the other kernel's answer and resumes after it
        s = AnnotationSession(items, "alice", store, "ratings", force=True)
        assert s.progress()["answered"] == 1 and "force=True" in " ".join(s.notes)
        s.answer(2)
        s.close()
    finally:
        other.kill()
        other.wait()
    # the other kernel is gone (killed, lease not released): its stale lease is taken over quietly
    s = AnnotationSession(items, "alice", store, "ratings")
    assert s.progress()["answered"] == 2
    s.close()


def test_reopened_in_same_kernel_old_object_stops_writing(store):
    items = human.rating_items(responses())
    first = AnnotationSession(items, "dan", store, "ratings")
    first.answer(3)
    second = AnnotationSession(items, "dan", store, "ratings")  # e.g. the cell was run again
    with pytest.raises(AnnotatorBusy, match="opened again elsewhere"):
        first.answer(4)
    assert len(store) == 1
    second.answer(5)
    assert len(store) == 2
    # the widget shows the refusal instead of raising
    pytest.importorskip("ipywidgets")
    w_old = human.HumanAnnotator(items, "erin", store, "ratings")
    human.HumanAnnotator(items, "erin", store, "ratings")
    w_old.press("1", token=w_old.token)
    assert "opened again elsewhere" in w_old.panel.message["text"]
    assert len(store) == 2


def test_changed_item_list_keeps_every_answer(store):
    items = human.rating_items(responses(3, 3))
    s = AnnotationSession(items, "fay", store, "ratings")
    answered = []
    for score in (1, 2, 3):
        answered.append(s.current()["item_id"])
        s.answer(score)
    s.close()
    gone = answered[0]
    extra = human.rating_items(pd.DataFrame({"instruction": ["New task"] * 2, "input": [""] * 2,
                                             "response": ["new 1", "new 2"]}))
    changed = pd.concat([items[items["item_id"] != gone], extra], ignore_index=True)
    s = AnnotationSession(changed, "fay", store, "ratings")
    assert s.changes == {"added": sorted(extra["item_id"]), "vanished": [gone], "kept_answers": 1}
    assert "kept in the store" in " ".join(s.notes)
    assert list(s.orphans["item_id"]) == [gone]
    assert s.progress() == {"total": 10, "answered": 2, "skipped": 0, "remaining": 8}
    assert s.current()["item_id"] not in answered
    assert len(store) == 3  # nothing deleted
    fb = human.human_feedback(store, "fay", "ratings")
    assert sorted(fb["response_id"]) == sorted(answered) and sorted(fb["score"]) == [1.0, 2.0, 3.0]
    s.close()
    s = AnnotationSession(changed, "fay", store, "ratings")  # same list again: no change reported
    assert s.changes is None
    s.close()


def test_changed_item_list_without_any_answer(store):
    """One name in two studies (one store): the second study's list differs and nothing was answered yet.
    Reopening must say the list changed, not fail on the empty answer table (KeyError 'item_id')."""
    first = human.rating_items(responses(2, 2))
    AnnotationSession(first, "gus", store, "ratings").close()
    other = human.rating_items(pd.DataFrame({"instruction": ["Other study"] * 2, "input": [""] * 2,
                                             "response": ["one", "two"]}))
    s = AnnotationSession(other, "gus", store, "ratings")
    assert s.changes == {"added": sorted(other["item_id"]), "vanished": sorted(first["item_id"]), "kept_answers": 0}
    assert s.orphans.empty and "item_id" in s.orphans
    assert s.progress() == {"total": 2, "answered": 0, "skipped": 0, "remaining": 2}
    s.close()


def test_bad_values_and_misuse(store):
    s = AnnotationSession(human.rating_items(responses(1, 2)), "gil", store, "ratings")
    for bad in (0, 8, 2.5, "5", True, "seven"):
        with pytest.raises(ValueError, match="whole number from 1 to 7"):
            s.answer(bad)
    assert len(store) == 0
    with pytest.raises(ValueError, match="kind must be"):
        AnnotationSession(human.rating_items(responses(1, 2)), "gil", store, "ratingz")
    r = AnnotationSession(human.ranking_items(responses(1, 2)), "gil", store, "rankings")
    with pytest.raises(ValueError, match="a, b, equal"):
        r.answer("c")
    with pytest.raises(ValueError, match="needs a store"):
        AnnotationSession(human.rating_items(responses(1, 2)), "hal", False, "ratings")


def test_human_tables_have_the_ai_judge_columns_and_feed_consistency(store):
    resp = responses(3, 3)
    ai_r = rate(resp, ConstantJudge(), store=store, progress=False)
    ai_k = rank(make_pairs(resp), ConstantJudge(), store=store, progress=False)
    s = AnnotationSession(human.rating_items(resp), "ida", store, "ratings")
    rng = np.random.default_rng(0)
    while not s.done:
        s.answer(int(rng.integers(1, 8)))
    s.close()
    k = AnnotationSession(human.ranking_items(resp), "ida", store, "rankings")
    while k.progress()["remaining"] > 1:
        k.answer(str(rng.choice(["a", "b", "equal"])))
    k.skip("cannot tell")
    assert k.done
    k.close()
    h_r, h_k = human.human_feedback(store, "ida", "ratings"), human.human_feedback(store, "ida", "rankings")
    assert list(h_r.columns) == list(ai_r.columns)
    assert list(h_k.columns) == list(ai_k.columns)
    assert h_r["score"].dtype == ai_r["score"].dtype and h_r["valid"].dtype == bool
    assert len(h_r) == 9 and len(h_k) == 9 and set(h_k["decision"].dropna()) <= {"a", "b", "equal"}
    skipped = h_k[~h_k["valid"]]
    assert len(skipped) == 1 and skipped["decision"].isna().all() and skipped["status"].iloc[0] == "invalid"
    assert "skipped by the annotator" in skipped["error"].iloc[0]
    with pytest.warns(consistency.ConsistencyWarning, match="1 ranked pairs skipped"):
        rep = consistency.report(h_r, h_k, bootstrap=0)
    assert rep.n_compared == 8 and rep.n_skipped_no_decision == 1
    assert human.known_annotators(store) == ["ida"]
    assert human.known_annotators(store, "rankings") == ["ida"]
    summary = human.annotator_summary(store)
    assert set(zip(summary["kind"], summary["answered"], summary["skipped"])) == {("ratings", 9, 0),
                                                                                 ("rankings", 8, 1)}


def test_all_feedback_lists_humans_with_both_kinds(store):
    resp = responses(2, 3)
    for name in ("jo", "kim"):
        s = AnnotationSession(human.rating_items(resp), name, store, "ratings")
        while not s.done:
            s.answer(4)
        s.close()
    k = AnnotationSession(human.ranking_items(resp), "jo", store, "rankings")
    k.answer("a")
    k.close()
    both = human.all_feedback(store)
    assert list(both) == ["jo"]  # kim has no rankings yet
    ratings, rankings = both["jo"]
    assert len(ratings) == 6 and len(rankings) == 1


def test_human_judge_serves_stored_answers_to_rate_and_rank(store):
    from sflib.human.judge import HumanJudge

    resp = responses(2, 3)
    s = AnnotationSession(human.rating_items(resp), "lu", store, "ratings")
    while s.progress()["remaining"] > 1:
        s.answer(6)
    s.close()
    judge = HumanJudge("lu", store)
    out = rate(resp, judge, store=store, progress=False)
    assert sorted(out["status"]) == ["failed"] + ["ok"] * 5 and set(out["score"].dropna()) == {6.0}
    assert "not answered" in out.loc[out["status"] == "failed", "error"].iloc[0]
    pairs = make_pairs(resp)
    k = AnnotationSession(human.ranking_items(pairs), "lu", store, "rankings")
    task = k.current()
    k.answer("a")  # the first-shown output, in whichever order this human saw the pair
    k.close()
    before = judge.params["answers"]
    judge = HumanJudge("lu", store)
    assert judge.params["answers"] != before  # a new answer is never served from an old cache entry
    ranked = rank(pairs, judge, store=store, progress=False)
    row = ranked[(ranked["response_id_1"] == task["response_id_1"]) & (ranked["response_id_2"] == task["response_id_2"])]
    assert row["decision"].iloc[0] == ("a" if task["order"] == "12" else "b")
    assert ranked["decision"].notna().sum() == 1


def test_answers_from_another_thread(store):
    """ipykernel 7 runs widget callbacks on a thread other than the cell's: the session must work there
    (the lease tables' connection was thread-bound and the first key typed after a click failed)."""
    import threading

    s = AnnotationSession(human.rating_items(responses()), "alice", store, "ratings")
    errors = []

    def work(score):
        try:
            s.answer(score)
        except Exception as e:  # reported below
            errors.append(e)

    for score in (5, 6):
        t = threading.Thread(target=work, args=(score,))
        t.start()
        t.join()
    assert errors == []
    assert list(human.human_feedback(store, "alice", "ratings")["score"]) == [5.0, 6.0]
    s.close()


def test_changed_item_list_before_any_answer_opens(store):
    """A session opened, nothing answered, then the study changes (e.g. policy.k 4 -> 3): the next session
    on the new item list opens and reports the change (it raised KeyError 'item_id' in notebook 08)."""
    items = human.rating_items(responses(3, 3))
    AnnotationSession(items, "gus", store, "ratings").close()
    changed = items.iloc[:-2].reset_index(drop=True)
    s = AnnotationSession(changed, "gus", store, "ratings")
    assert s.changes == {"added": [], "vanished": sorted(items["item_id"].iloc[-2:]), "kept_answers": 0}
    assert s.orphans.empty and "item_id" in s.orphans.columns
    assert s.progress()["total"] == len(changed) and s.current() is not None
    s.close()
