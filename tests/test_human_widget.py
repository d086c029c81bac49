"""The annotator widget driven from Python: clicks, keys, skip, undo, comment, resume — store checked after each."""
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


def rows(store, judge="human:alice", kind="ratings"):
    df = stored_answers(store, judge, kind)
    return {(m["item_id"], m["order"]): r for m, r in zip(df["meta"], df.to_dict("records"))}


def test_rating_clicks_skip_undo_comment_keys_and_resume(store):
    items = human.rating_items(responses())
    ann = human.HumanAnnotator(items, "alice", store, "ratings")
    assert ann.progress_label.value.startswith("0 / 9 done")
    first = ann.session.current()
    assert "accuracy" in ann.guide.children[0].value and "7 = perfect" in ann.guide.children[0].value
    assert first["response"] in ann.task_html.value

    ann.buttons[5].click()
    stored = rows(store)
    assert list(stored) == [(first["item_id"], "")]
    r = stored[(first["item_id"], "")]
    assert (r["value"], r["status"], r["valid"], r["raw"], r["judge"]) == (5, "ok", True, "Score: 5", "human:alice")
    assert r["key"] == task_key("human:alice", "ratings", first["item_id"], "")
    assert r["meta"]["response"] == first["response"]
    assert ann.progress_label.value.startswith("1 / 9 done")

    second = ann.session.current()
    assert second["item_id"] != first["item_id"]
    ann.skip_button.click()
    r = rows(store)[(second["item_id"], "")]
    assert (r["status"], r["valid"], r["value"], r["error"]) == ("invalid", False, None, "skipped by the annotator")
    assert "1 answered, 1 skipped" in ann.progress_label.value

    ann.undo_button.click()  # the skip goes, the skipped task is back
    assert (second["item_id"], "") not in rows(store)
    assert ann.session.current()["item_id"] == second["item_id"]
    assert len(rows(store)) == 1

    ann.comment.value = "  too long  "
    ann.buttons[2].click()
    r = rows(store)[(second["item_id"], "")]
    assert r["value"] == 2 and r["raw"] == "Score: 2\ntoo long" and r["meta"]["comment"] == "too long"
    assert ann.comment.value == ""

    third = ann.session.current()
    ann.keys.value = "7"  # keyboard: the key box acts on each keystroke and is cleared
    assert ann.keys.value == ""
    assert rows(store)[(third["item_id"], "")]["value"] == 7
    ann.keys.value = "x"  # an unbound key does nothing
    assert len(rows(store)) == 3 and "does nothing" in ann.message.value
    fourth = ann.session.current()
    ann.close()

    # restart: a new annotator (as after a kernel restart) resumes at the next unanswered task
    again = human.HumanAnnotator(items, "alice", store, "ratings")
    assert again.session.current()["item_id"] == fourth["item_id"]
    assert again.progress_label.value.startswith("3 / 9 done")
    again.undo_button.click()  # undo works across a restart: the latest answer (the 7) goes
    assert (third["item_id"], "") not in rows(store) and len(rows(store)) == 2
    assert again.session.current()["item_id"] == third["item_id"]
    for _ in range(9):
        if again.session.done:
            break
        again.buttons[4].click()
    assert again.session.done and len(rows(store)) == 9
    assert all(b.disabled for b in again.buttons.values()) and "All 9 tasks done" in again.task_html.value
    again.buttons[4].click()  # a click after the end changes nothing
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
    assert task["output_a"] in ann.task_html.value and task["output_b"] in ann.task_html.value
    ann.buttons["a"].click()
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
    loser = {"a": "b", "b": "a"}[winner]
    ann.keys.value = position(loser, other)  # picks the other response now: the orders disagree
    fb = human.human_feedback(store, "bob", "rankings")
    assert fb["decision"].iloc[0] == "equal"
    assert set(fb[["verdict_12", "verdict_21"]].iloc[0]) <= {"a", "b"}
    ann.undo()
    assert len(rows(store, "human:bob", "rankings")) == 1
    assert ann.session.current()["order"] == other
    ann.keys.value = position(winner, other)  # the same response in both orders: it wins
    fb = human.human_feedback(store, "bob", "rankings")
    assert fb["decision"].iloc[0] == winner
    before = rows(store, "human:bob", "rankings")
    ann.keys.value = "e"
    new = {t: r for t, r in rows(store, "human:bob", "rankings").items() if t not in before}
    assert [(r["value"], r["raw"]) for r in new.values()] == [("equal", "Equal")]
    ann.close()


def test_a_click_writes_through_before_the_next_task(store, tmp_path):
    """A second connection (another process's view) sees every click at once."""
    items = human.rating_items(responses(1, 3))
    ann = human.HumanAnnotator(items, "carol", store, "ratings")
    other = AnnotationStore(tmp_path / "annotations.sqlite")
    for n, s in enumerate((3, 6, 1), start=1):
        ann.buttons[s].click()
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
            r.buttons[s].click()
        for n in range(n_pairs):
            if k.session.done:
                break
            k.buttons["a" if n % 3 else "b"].click()
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
