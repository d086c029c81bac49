"""The annotator widget driven from Python as the browser drives it (key messages with the token of the task on
screen): clicks, keys, skip, undo, revisit, comment, resume — store checked after each; the key queue, latency per
item, takeover and the messages."""
import time

import pytest

from human_fixtures import responses
from sflib import human
from sflib.human.session import stored_answers, task_key
from sflib.feedback.store import AnnotationStore

pytest.importorskip("ipywidgets")


@pytest.fixture
def store(tmp_path):
    st = AnnotationStore(tmp_path / "annotations.sqlite")
    yield st
    st.close()


def press(ann, key, comment=None, latency_s=None):
    """A key press (or the click on that key's button) as the browser sends it: with the token on screen."""
    ann.press(key, token=ann.token, comment=comment, latency_s=latency_s)


def rows(store, judge="human:alice", kind="ratings"):
    df = stored_answers(store, judge, kind)
    return {(m["item_id"], m["order"]): r for m, r in zip(df["meta"], df.to_dict("records"))}


def test_rating_clicks_skip_undo_comment_keys_and_resume(store):
    items = human.rating_items(responses())
    ann = human.HumanAnnotator(items, "alice", store, "ratings")
    assert ann.panel.progress == {"total": 9, "answered": 0, "skipped": 0, "remaining": 9}
    first = ann.session.current()
    assert "accuracy" in ann.panel.guide and "7 = perfect" in ann.panel.guide
    assert ann.panel.task["response"] == first["response"] and ann.panel.task["token"] == ann.token

    press(ann, "5")
    stored = rows(store)
    assert list(stored) == [(first["item_id"], "")]
    r = stored[(first["item_id"], "")]
    assert (r["value"], r["status"], r["valid"], r["raw"], r["judge"]) == (5, "ok", True, "Score: 5", "human:alice")
    assert r["key"] == task_key("human:alice", "ratings", first["item_id"], "")
    assert r["meta"]["response"] == first["response"]
    assert ann.panel.progress["answered"] == 1

    second = ann.session.current()
    assert second["item_id"] != first["item_id"]
    press(ann, "s")
    r = rows(store)[(second["item_id"], "")]
    assert (r["status"], r["valid"], r["value"], r["error"]) == ("invalid", False, None, "skipped by the annotator")
    assert (ann.panel.progress["answered"], ann.panel.progress["skipped"]) == (1, 1)

    press(ann, "u")  # the skip goes, the skipped task is back
    assert (second["item_id"], "") not in rows(store)
    assert ann.session.current()["item_id"] == second["item_id"]
    assert len(rows(store)) == 1

    press(ann, "2", comment="  too long  ")  # the comment box's text comes with the answer
    r = rows(store)[(second["item_id"], "")]
    assert r["value"] == 2 and r["raw"] == "Score: 2\ntoo long" and r["meta"]["comment"] == "too long"
    assert ann.panel.comment["text"] == ""  # the box is emptied

    third = ann.session.current()
    press(ann, "7")
    assert rows(store)[(third["item_id"], "")]["value"] == 7
    press(ann, "x")  # an unbound key does nothing
    assert len(rows(store)) == 3 and "does nothing" in ann.panel.message["text"]
    fourth = ann.session.current()
    ann.close()

    # restart: a new annotator (as after a kernel restart) resumes at the next unanswered task
    again = human.HumanAnnotator(items, "alice", store, "ratings")
    assert again.session.current()["item_id"] == fourth["item_id"]
    assert again.panel.progress["remaining"] == 6
    press(again, "u")  # undo works across a restart: the latest answer (the 7) goes
    assert (third["item_id"], "") not in rows(store) and len(rows(store)) == 2
    assert again.session.current()["item_id"] == third["item_id"]
    for _ in range(9):
        if again.session.done:
            break
        press(again, "4")
    assert again.session.done and len(rows(store)) == 9
    assert again.panel.task == {} and "All 9 tasks done" in again.panel.done_text
    press(again, "4")  # a key after the end changes nothing
    assert len(rows(store)) == 9
    again.close()


def test_ranking_clicks_record_shown_order_and_decision(store):
    items = human.ranking_items(responses())
    ann = human.HumanAnnotator(items, "bob", store, "rankings", both_orders=1.0)
    q = ann.session.queue
    assert len(q) == 2 * len(items) and {o for _, o in q} == {"12", "21"}
    assert all(sorted(o for i2, o in q if i2 == i) == ["12", "21"] for i in items["item_id"])
    task = ann.session.current()
    assert task["output_a"] == (task["response1"] if task["order"] == "12" else task["response2"])
    assert (ann.panel.task["output_a"], ann.panel.task["output_b"]) == (task["output_a"], task["output_b"])
    press(ann, "a")
    r = rows(store, "human:bob", "rankings")[(task["item_id"], task["order"])]
    assert (r["value"], r["raw"], r["meta"]["order"]) == ("a", "Output (a)", task["order"])
    fb = human.human_feedback(store, "bob", "rankings")
    assert len(fb) == 1
    assert fb["decision"].iloc[0] == ("a" if task["order"] == "12" else "b")
    assert fb[f"verdict_{task['order']}"].iloc[0] == "a"
    # the same pair shown in the other order (the position-bias check)
    winner = "a" if task["order"] == "12" else "b"  # the response picked first, in response terms
    other = "21" if task["order"] == "12" else "12"

    def position(choice, order):  # where that response is shown in that order
        return choice if order == "12" else {"a": "b", "b": "a"}[choice]

    k = next(n for n, t in enumerate(q) if t == (task["item_id"], other))
    ann.session.pos = k
    ann._show()
    loser = {"a": "b", "b": "a"}[winner]
    press(ann, position(loser, other))  # picks the other response now: the orders disagree
    fb = human.human_feedback(store, "bob", "rankings")
    assert fb["decision"].iloc[0] == "equal"
    assert set(fb[["verdict_12", "verdict_21"]].iloc[0]) <= {"a", "b"}
    ann.undo()
    assert len(rows(store, "human:bob", "rankings")) == 1
    assert ann.session.current()["order"] == other
    press(ann, position(winner, other))  # the same response in both orders: it wins
    fb = human.human_feedback(store, "bob", "rankings")
    assert fb["decision"].iloc[0] == winner
    before = rows(store, "human:bob", "rankings")
    press(ann, "e")
    new = {t: r for t, r in rows(store, "human:bob", "rankings").items() if t not in before}
    assert [(r["value"], r["raw"]) for r in new.values()] == [("equal", "Equal")]
    ann.close()


def test_a_click_writes_through_before_the_next_task(store, tmp_path):
    """A second connection (another process's view) sees every click at once."""
    items = human.rating_items(responses(1, 3))
    ann = human.HumanAnnotator(items, "carol", store, "ratings")
    other = AnnotationStore(tmp_path / "annotations.sqlite")
    for n, s in enumerate((3, 6, 1), start=1):
        press(ann, str(s))
        assert len(other.to_frame(judge="human:carol", decode=False)) == n
    other.close()
    ann.close()


def test_done_when_two_people_annotate_close_reopen_and_compare(store):
    """Ten ratings and ten pairs by clicks, close, reopen, continue; a second annotator's overlap gives agreement;
    each human's consistency sits beside the AI judge's."""
    from sflib.consistency import agreement
    from sflib import consistency

    ai_ratings, ai_rankings = consistency.load_vendored("sample")
    first = list(dict.fromkeys(ai_rankings["instruction_id"]))[:2]
    pairs = human.ranking_items(ai_rankings[ai_rankings["instruction_id"].isin(first)])
    rated = human.rating_items(ai_ratings[ai_ratings["instruction_id"].isin(first)])
    assert len(rated) >= 10 and len(pairs) >= 10
    score = dict(zip(ai_ratings["response_id"], ai_ratings["score"]))

    def work(name, n_ratings, n_pairs, shift):
        r = human.HumanAnnotator(rated, name, store, "ratings")
        k = human.HumanAnnotator(pairs, name, store, "rankings")
        for _ in range(n_ratings):
            if r.session.done:
                break
            s = int(min(7, max(1, score.get(r.session.current()["response_id"], 4) + shift)))
            press(r, str(s))
        for n in range(n_pairs):
            if k.session.done:
                break
            press(k, "a" if n % 3 else "b")
        r.close()
        k.close()

    work("alice", 6, 4, 0)          # part of the work, then the notebook is closed
    assert human.annotator_summary(store)["answered"].tolist() == [4, 6]
    work("alice", 10, 10, 0)        # reopened: continues where it stopped
    done = human.annotator_summary(store).set_index("kind")["answered"]
    assert done["ratings"] == len(rated) and done["rankings"] == 14
    work("bob", 10, 14, 1)
    feedback = human.all_feedback(store)
    assert list(feedback) == ["alice", "bob"]
    table = agreement.human_vs_ai(feedback, {"gpt-3.5": (ai_ratings, ai_rankings)}, bootstrap=20)
    assert table.loc[table["judge"] == "alice", "n_compared"].iloc[0] == 14
    assert set(table["who"]) == {"human", "AI"} and "same as humans" in set(table["pairs"])
    agree = agreement.agreement_table({n: r for n, (r, _) in feedback.items()}, "ratings").set_index("measure")
    assert agree.loc["Cohen's kappa (unweighted)", "n_items"] == len(rated)
    assert agree.loc["Cohen's kappa (unweighted)", "value"] < 1.0  # bob is one point more generous


def test_key_queue_applies_each_key_to_the_task_it_was_pressed_on(store):
    """The browser sends one key at a time with the token of the task on screen and waits for the ack: a burst
    of keys becomes that many answers in order; a key meant for a task no longer shown is not applied."""
    items = human.rating_items(responses())
    ann = human.HumanAnnotator(items, "alice", store, "ratings")
    acks = []
    ann.panel.send = acks.append
    queue = list(ann.session.queue)
    burst = "1234567"
    for seq, key in enumerate(burst, start=1):  # what panel.js does: send the head, wait for the ack, repeat
        shown = ann.panel.task["token"]
        ann._on_msg(ann.panel, {"type": "key", "key": key, "seq": seq, "token": shown, "latency_s": 0.05,
                                "comment": ""}, [])
        assert acks[-1]["seq"] == seq and acks[-1]["token"] == ann.panel.task.get("token", "")
        assert acks[-1]["token"] != shown  # the next key goes to a new task, drawn first
    df = stored_answers(store, "human:alice", "ratings").sort_values("created_at")
    assert list(zip(df["item_id"], df["value"])) == [(queue[i][0], int(k)) for i, k in enumerate(burst)]
    # a key that arrives with the token of a task no longer on screen answers nothing (and is still acked)
    ann._on_msg(ann.panel, {"type": "key", "key": "3", "seq": 99, "token": "t1", "comment": ""}, [])
    assert len(rows(store)) == len(burst) and acks[-1]["seq"] == 99
    assert "not applied" in ann.panel.message["text"] and ann.panel.message["level"] == "error"
    ann.close()


def test_latency_is_per_item_from_when_it_was_shown(store):
    """The browser's measure is stored as it is; without one, the clock starts when the task is shown
    (current()), not when the widget or session was made — so a second widget's first task does not count the
    time spent on the first widget."""
    ratings = human.HumanAnnotator(human.rating_items(responses()), "alice", store, "ratings")
    press(ratings, "5", latency_s=3.25)
    assert rows(store)[next(iter(rows(store)))]["latency_s"] == 3.25
    session = human.AnnotationSession(human.ranking_items(responses()), "alice", store, "rankings")
    time.sleep(0.6)  # time spent elsewhere before this task is shown
    session.current()
    session.answer("a")
    latency = stored_answers(store, "human:alice", "rankings")["latency_s"].iloc[0]
    assert 0 <= latency < 0.5
    session.current()
    time.sleep(0.3)
    session.answer("b")
    latencies = stored_answers(store, "human:alice", "rankings").sort_values("created_at")["latency_s"].tolist()
    assert latencies[1] >= 0.3
    ratings.close()
    session.close()


def test_revisit_skipped_from_the_widget_and_the_messages_name_the_item(store):
    items = human.rating_items(responses(1, 3))
    ann = human.HumanAnnotator(items, "alice", store, "ratings")
    q = ann.session.queue
    press(ann, "r")
    assert ann.panel.message["text"] == "no skipped task to revisit"
    press(ann, "s")
    assert ann.panel.message["text"].startswith(f"skipped task 1 of 3 (item {q[0][0][:12]})")
    assert "Revisit skipped, key r" in ann.panel.message["text"]
    press(ann, "6")
    assert ann.panel.message["text"] == f"saved task 2 of 3 (item {q[1][0][:12]}): Score: 6"
    press(ann, "4")
    assert ann.session.done and "1 skipped: press Revisit skipped (key r)" in ann.panel.done_text
    press(ann, "r")  # the skipped task is back, with the earlier answer (the skip) named
    assert ann.panel.task["item_id"] == q[0][0] and "showing skipped task 1 of 3" in ann.panel.message["text"]
    press(ann, "7")
    assert rows(store)[q[0]]["value"] == 7 and rows(store)[q[0]]["status"] == "ok"
    assert ann.session.done and ann.panel.progress["skipped"] == 0
    # undo goes back through the whole session, latest first
    for expected in ("7", "4", "6"):
        press(ann, "u")
        assert f"Score: {expected} deleted" in ann.panel.message["text"]
    assert len(rows(store)) == 0
    press(ann, "u")
    assert ann.panel.message["text"].startswith("nothing to undo")
    ann.close()


def test_busy_and_takeover_messages_give_advice_that_works_in_notebook_08(store):
    from sflib.human.lease import AnnotatorBusy, Lease

    items = human.rating_items(responses(1, 3))
    old = human.HumanAnnotator(items, "alice", store, "ratings")
    held = old.session.lease.tables.lease("alice", "ratings")
    old.session.lease.tables.set_lease("alice", "ratings", dict(held, pid=1))  # another live process
    with pytest.raises(AnnotatorBusy) as busy:
        Lease(store, "alice", "ratings")
    assert "force = True in the parameters cell of notebook 08" in str(busy.value)
    assert "annotator.close()" not in str(busy.value)
    old.session.lease.tables.set_lease("alice", "ratings", held)
    new = human.HumanAnnotator(items, "alice", store, "ratings", force=True)  # takes over
    press(old, "u")  # nothing to undo in the old window, and yet: the takeover is what it says
    assert old.panel.message["level"] == "error" and "opened again elsewhere" in old.panel.message["text"]
    press(old, "5")
    assert len(rows(store)) == 0 and "opened again elsewhere" in old.panel.message["text"]
    press(new, "5")
    assert len(rows(store)) == 1
    new.close()
