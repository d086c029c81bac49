"""``human.consistency_beside_ai``: the consistency notebook's headline table (humans beside the AI judge, their
agreement), from answers written through the annotation session (the widget's own path)."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from sflib.consistency import agreement
from sflib import consistency, human
from sflib.human import AnnotationSession
from sflib.feedback.store import AnnotationStore

FLIP = {"a": "b", "b": "a", "equal": "equal"}


@pytest.fixture(scope="module")
def material():
    return human.study_material("paper")


@pytest.fixture
def store(tmp_path):
    st = AnnotationStore(tmp_path / "annotations.sqlite")
    yield st
    st.close()


def items_of(material, n_instructions=3):
    pairs = human.ranking_items(material["ai_rankings"].dropna(subset=["decision"]))
    keep = list(dict.fromkeys(pairs["instruction_id"]))[:n_instructions]
    ratings = human.rating_items(material["responses"])
    return ratings[ratings["instruction_id"].isin(keep)], pairs[pairs["instruction_id"].isin(keep)]


def annotate(store, items, name, kind, choose, limit=None, seed=0):
    """Answer ``name``'s queue with ``choose(task)`` (a score, or a decision in response terms) through the session."""
    s = AnnotationSession(items, name, store, kind, seed=seed)
    k = 0
    while not s.done and (limit is None or k < limit):
        task = s.current()
        value = choose(task)
        if kind == "rankings" and task["order"] == "21":
            value = FLIP[value]  # the position shown that means this decision
        s.answer(value)
        k += 1
    s.close()


def ai_lookup(material):
    r = material["ai_ratings"].dropna(subset=["score"]).drop_duplicates("response_id")
    k = material["ai_rankings"].dropna(subset=["decision"]).drop_duplicates(["response_id_1", "response_id_2"])
    return (dict(zip(r["response_id"], r["score"].astype(int))),
            dict(zip(k["response_id_1"] + "-" + k["response_id_2"], k["decision"])))


def test_no_human_answers_gives_the_note_and_creates_nothing(tmp_path, store, material):
    missing = tmp_path / "nowhere" / "annotations.sqlite"
    for where in (missing, store, SimpleNamespace(store_path=missing)):
        table, fig, note = human.consistency_beside_ai(where, material["ai_ratings"], material["ai_rankings"])
        assert table.empty and fig is None
        assert note == "no human feedback yet: annotate in notebook 08" == human.NO_HUMANS
        assert "consistency" in table.columns and table.attrs["agreement"].empty
    assert not missing.parent.exists()


def test_a_human_copying_the_ai_judge_matches_its_consistency_on_the_same_pairs(store, material):
    scores, decisions = ai_lookup(material)
    r_items, k_items = items_of(material)
    annotate(store, r_items, "alice", "ratings", lambda t: scores.get(t["response_id"], 4))
    annotate(store, k_items, "alice", "rankings", lambda t: decisions[t["item_id"]])
    table, fig, note = human.consistency_beside_ai(store, material["ai_ratings"], material["ai_rankings"],
                                                   ai_name="GPT-3.5", bootstrap=200)
    rows = {(r.judge, r.pairs): r for r in table.itertuples()}
    alice, same, whole = rows[("alice", "own")], rows[("GPT-3.5", "same as humans")], rows[("GPT-3.5", "all")]
    assert alice.who == "human" and same.who == "AI"
    assert alice.n_compared == same.n_compared == len(k_items)
    assert alice.consistency == pytest.approx(same.consistency)
    assert whole.n_compared > same.n_compared
    # the human row is exactly sflib.consistency.report of the human's own tables
    rep = consistency.report(human.human_feedback(store, "alice", "ratings"),
                             human.human_feedback(store, "alice", "rankings"), bootstrap=0)
    assert alice.consistency == pytest.approx(rep.consistency)
    assert alice.ci_low <= alice.consistency <= alice.ci_high
    assert table.attrs["agreement"].empty  # one annotator: nothing to agree with
    assert len(fig.axes) == 1
    assert f"alice (human, own pairs): consistency {100 * rep.consistency:.0f}%" in note
    assert f"n={alice.n_compared}" in note and "agreement" not in note
    fig.clf()


def test_two_annotators_overlap_gives_agreement_with_n(store, material):
    scores, decisions = ai_lookup(material)
    r_items, k_items = items_of(material)
    annotate(store, r_items, "alice", "ratings", lambda t: scores.get(t["response_id"], 4))
    annotate(store, k_items, "alice", "rankings", lambda t: decisions[t["item_id"]])
    # bob does only part of his queue (his own random order): the overlap is what he answered
    annotate(store, r_items, "bob", "ratings", lambda t: scores.get(t["response_id"], 4), limit=8, seed=1)
    annotate(store, k_items, "bob", "rankings", lambda t: FLIP[decisions[t["item_id"]]], limit=7, seed=1)
    bob_r = human.human_feedback(store, "bob", "ratings")
    bob_k = human.human_feedback(store, "bob", "rankings")
    table, fig, note = human.consistency_beside_ai(store, material["ai_ratings"], material["ai_rankings"],
                                                   bootstrap=100)
    assert set(table.loc[table["who"] == "human", "judge"]) == {"alice", "bob"}
    agree = table.attrs["agreement"]
    qk = agree[(agree["kind"] == "ratings") & agree["measure"].str.startswith("Cohen's kappa (quadratic")].iloc[0]
    assert qk["n_items"] == bob_r["valid"].sum() == 8 and qk["value"] == pytest.approx(1.0)  # same scores
    dk = agree[(agree["kind"] == "rankings") & (agree["measure"] == "Cohen's kappa (unweighted)")].iloc[0]
    alice_k = human.human_feedback(store, "alice", "rankings")
    joint = bob_k.merge(alice_k, on=["response_id_1", "response_id_2"], suffixes=("_bob", "_alice"))
    assert dk["n_items"] == len(bob_k) == len(joint) == 7
    flipped = (joint["decision_bob"] != joint["decision_alice"]).sum()
    assert flipped == (joint["decision_alice"] != "equal").sum() > 0  # bob flips every non-tie decision
    assert dk["value"] == pytest.approx(agreement.cohen_kappa(joint["decision_alice"], joint["decision_bob"]))
    assert dk["value"] < 1
    assert {"Krippendorff's alpha (ordinal)", "Krippendorff's alpha (nominal)"} <= set(agree["measure"])
    assert len(fig.axes) == 2
    assert f"Cohen's kappa (unweighted) = {dk['value']:.2f}, n={dk['n_items']}" in note
    # the same figures as agreement.agreement_table gives directly
    direct = agreement.agreement_table({n: human.human_feedback(store, n, "ratings") for n in ("alice", "bob")})
    assert direct.iloc[0]["value"] == pytest.approx(qk["value"])
    fig.clf()


def test_no_overlap_is_said_and_annotators_filter(store, material):
    scores, decisions = ai_lookup(material)
    r_items, k_items = items_of(material, 4)
    plan_r = human.assign(r_items, ["alice", "bob"], kind="ratings", overlap=0.0, seed=0)
    plan_k = human.assign(k_items, ["alice", "bob"], kind="rankings", overlap=0.0, seed=0)
    for name in ("alice", "bob"):
        for kind, items, plan in (("ratings", r_items, plan_r), ("rankings", k_items, plan_k)):
            s = AnnotationSession(items, name, store, kind, assignment=plan)
            while not s.done:
                t = s.current()
                v = scores.get(t["response_id"], 4) if kind == "ratings" else decisions[t["item_id"]]
                s.answer(FLIP[v] if kind == "rankings" and t["order"] == "21" else v)
            s.close()
    table, fig, note = human.consistency_beside_ai(store, bootstrap=0)
    assert set(table["who"]) == {"human"}  # no AI judge given
    assert table.attrs["agreement"].empty and len(fig.axes) == 1
    assert "judged no common items (no overlap)" in note
    only, _, note1 = human.consistency_beside_ai(store, annotators=["bob"], bootstrap=0)
    assert list(only["judge"]) == ["bob"] and "agreement" not in note1
    with pytest.raises(ValueError, match="both ai_ratings and ai_rankings"):
        human.consistency_beside_ai(store, material["ai_ratings"], None)
    assert np.isfinite(table["consistency"]).all()
    fig.clf()


@pytest.mark.parametrize("ai", ["unanswered", "none"])
def test_simulated_annotators_without_any_ai_answer(material, tmp_path, ai):
    """Notebook 08 headless, for a study whose feedback judge has no valid answer (e.g. ``human:alice`` not
    annotated yet): the simulated annotators answer every pair around a neutral answer instead of failing
    with "the assignment has no tasks for annotator 'sim-1'"."""
    responses = material["responses"][material["responses"]["instruction_id"].isin(
        list(dict.fromkeys(material["responses"]["instruction_id"]))[:2])]
    ratings = responses[["response_id"]].assign(score=np.nan, judge="human:alice")
    rankings = human.ranking_items(responses)[["response_id_1", "response_id_2"]].assign(decision=None)
    mat = dict(material, responses=responses, pairs=responses,
               ai_ratings=ratings if ai == "unanswered" else None, ai_rankings=rankings if ai == "unanswered" else None)
    store = AnnotationStore(tmp_path / "sim.sqlite")
    plan = human.simulated_answers(store, mat, n_instructions=2, seed=0)
    fb = human.all_feedback(store)
    assert sorted(fb) == ["sim-1", "sim-2", "sim-3"] and set(plan["kind"]) == {"ratings", "rankings"}
    r, k = fb["sim-1"]
    assert set(r["response_id"]) <= set(responses["response_id"]) and len(r) > 0 and r["score"].between(1, 7).all()
    assert len(k) > 0 and set(k["instruction_id"]) <= set(responses["instruction_id"])
    store.close()


def test_study_material_names_the_study_feedback_judge(tmp_path, monkeypatch):
    """Notebook 08 annotates as the study's human feedback judge (``human:alice``) when no annotator is given:
    the study material carries ``feedback_judge`` from the study file."""
    import json


    from sflib.study import load

    monkeypatch.setenv("SFLIB_OUTPUTS", str(tmp_path / "out"))
    (tmp_path / "i.jsonl").write_text(json.dumps({"instruction": "Say hi.", "input": ""}) + "\n")
    path = tmp_path / "s.yaml"
    path.write_text("name: humans\ninstructions:\n  paths: [i.jsonl]\npolicy:\n  name: local:smollm2\n  k: 2\n"
                    "feedback:\n  judge: human:alice\n")
    resp = pd.DataFrame({"instruction_id": ["i1", "i1"], "response_id": ["r1", "r2"], "instruction": ["Say hi."] * 2,
                         "input": ["", ""], "response": ["Hi.", "Hello!"]})
    load(path).save("responses", tables={"responses": resp})
    material = human.study_material(str(path))
    assert material["feedback_judge"] == "human:alice" and len(material["responses"]) == 2


def test_report_section_08_reads_the_store_without_a_session(tmp_path, monkeypatch):
    """The study report's 08: who answered, each annotator's consistency beside the AI judge (the same numbers
    as notebook 08's table) and their agreement; before any answer, a line saying how to collect them."""
    from sflib import study as studies
    from sflib.human.findings import findings

    monkeypatch.setenv("SFLIB_OUTPUTS", str(tmp_path / "out"))
    s = studies.load("paper")
    empty = findings(s, bootstrap=50)
    assert empty.headline.startswith("No human answers") and not empty.estimates
    mat = human.study_material("paper")
    store = AnnotationStore(s.store_path)
    human.simulated_answers(store, mat, n_instructions=4, seed=0)
    fb = human.all_feedback(store)
    store.close()
    f = findings(s, bootstrap=50)
    assert set(f.tables["who answered"]["annotator"]) == {"sim-1", "sim-2", "sim-3"}
    want = agreement.human_vs_ai(fb, {mat["ai_name"]: (mat["ai_ratings"], mat["ai_rankings"])}, bootstrap=50, seed=0)
    got = {e.name: e for e in f.estimates}
    for r in want[want["n_compared"] > 0].itertuples():
        e = got[f"{r.judge} ({r.who}, {r.pairs} pairs): ratings and rankings agree"]
        assert (e.value, e.n) == (pytest.approx(100 * r.consistency), r.n_compared)
    assert "agreement between annotators" in f.tables
    assert f.headline.startswith("3 human annotator(s), ")
