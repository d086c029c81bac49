"""Reward models from any protocol (``reward_models.protocols``, :mod:`sflib.rm.protocols`).

Unit tests of the conversions on hand-written verdicts (listwise -> its implied pairs, 5-way -> pairs by the
sign of the two orders' mean strength, rubric -> 1-7 scores); config validation; and, against the fake server,
a study with ``reward_models.protocols: [listwise-k, pairwise-5way, rubric]`` through 01 -> 07 and 09: `study plan`
counts 05's protocol calls once (09's rows say "counted there"), a budget that does not cover them stops before
05, the listwise RM trains on exactly its implied pairs, 06 picks with it, 07 evaluates it, and 09 asks nothing
again (the server's request count does not grow)."""
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytest.importorskip("papermill")

import nbcheck  # tests/ is on sys.path under pytest

from sflib.protocols import get_protocol
from sflib.rm import protocols as P

ROOT = Path(__file__).resolve().parents[1]


def _responses(k=3, instructions=("i1", "i2")):
    return pd.DataFrame([dict(instruction_id=i, response_id=f"{i}r{j}", instruction=f"task {i}", input="",
                              response=f"answer {i} {j}") for i in instructions for j in range(k)])


# --------------------------------------------------------------------------- conversions

def test_listwise_gives_its_implied_pairs_no_ties():
    resp = _responses(k=4)
    ids = [f"i1r{j}" for j in range(4)]
    v = pd.DataFrame([dict(instruction_id="i1", response_ids=ids, value=["C", "A", "D", "B"], valid=True, k=4),
                      dict(instruction_id="i2", response_ids=[f"i2r{j}" for j in range(4)], value=None, valid=False,
                           k=4)])
    t = P.convert(get_protocol("listwise-k"), v, resp)
    assert P.kind_of(get_protocol("listwise-k")) == "rankings"
    assert len(t) == 4 * 3 // 2 and set(t["instruction_id"]) == {"i1"}           # k(k-1)/2, invalid one left out
    # by hand: C (r2) > A (r0) > D (r3) > B (r1)
    rank = {"i1r2": 0, "i1r0": 1, "i1r3": 2, "i1r1": 3}
    for r1, r2, dec, a, b in zip(t["response_id_1"], t["response_id_2"], t["decision"], t["response1"], t["response2"]):
        assert r1 < r2 and dec == ("a" if rank[r1] < rank[r2] else "b")
        assert a == f"answer i1 {r1[-1]}" and b == f"answer i1 {r2[-1]}"
    assert "equal" not in set(t["decision"])


def test_five_way_decision_is_the_sign_of_the_mean_strength():
    resp = _responses(k=3)
    rows = [("i1r0", "i1r1", "12", -2), ("i1r0", "i1r1", "21", 1),     # r0 much better, r0 better: +1.5 -> a
            ("i1r0", "i1r2", "12", 1), ("i1r0", "i1r2", "21", -1),     # r2 better in both orders: -1 -> b
            ("i1r1", "i1r2", "12", -1), ("i1r1", "i1r2", "21", -1),    # r1 better, then r2 better: 0 -> equal
            ("i2r0", "i2r1", "12", 2)]                                  # one order only: no decision
    v = pd.DataFrame([dict(instruction_id=r1[:2], response_id_1=r1, response_id_2=r2, order=o, value=x, valid=True)
                      for r1, r2, o, x in rows])
    t = P.convert(get_protocol("pairwise-5way"), v, resp).set_index(["response_id_1", "response_id_2"])
    assert len(t) == 3
    assert t.loc[("i1r0", "i1r1"), "decision"] == "a" and t.loc[("i1r0", "i1r1"), "strength"] == (1.5 + 2) / 4
    assert t.loc[("i1r0", "i1r2"), "decision"] == "b" and t.loc[("i1r0", "i1r2"), "strength"] == 0.25
    assert t.loc[("i1r1", "i1r2"), "decision"] == "equal"                         # left out by Bradley-Terry
    from sflib.rm.objectives import prepare_rankings

    used, counts = prepare_rankings(t.reset_index())
    assert counts["used"] == 2 and counts["ties_excluded"] == 1
    assert list(used["preferred"]) == ["answer i1 0", "answer i1 2"]


def test_rubric_aggregate_maps_onto_the_ratings_scale():
    resp = _responses(k=3)
    aspects = ["helpfulness", "correctness", "coherence", "harmlessness"]
    vals = {"i1r0": [5, 5, 5, 5], "i1r1": [1, 2, 3, 3], "i1r2": [1, 1, 1, 1], "i2r0": [3, 3, 3, 4]}
    v = pd.DataFrame([dict(instruction_id=r[:2], item=r, value=dict(zip(aspects, x)), valid=True)
                      for r, x in vals.items()] + [dict(instruction_id="i2", item="i2r1", value=None, valid=False)])
    rb = get_protocol("rubric")
    t = P.convert(rb, v, resp).set_index("response_id")
    assert P.kind_of(rb) == "ratings" and len(t) == 4
    # mean on 1-5 -> 1 + 6 (mean - 1) / 4, rounded: 5 -> 7, 2.25 -> 2.875 -> 3, 1 -> 1, 3.25 -> 4.375 -> 4
    assert t["score"].to_dict() == {"i1r0": 7, "i1r1": 3, "i1r2": 1, "i2r0": 4}
    assert t.loc["i1r1", "protocol_score"] == 2.25 and t.loc["i1r1", "response"] == "answer i1 1"
    pairs = P.implied_pairs(t.reset_index())                                      # from the unrounded aggregate
    assert len(pairs) == 3 and list(pairs["decision"]) == ["a", "a", "a"]


def test_rating_scores_pass_through():
    v = pd.DataFrame([dict(instruction_id="i1", item="i1r0", value=6, valid=True),
                      dict(instruction_id="i1", item="i1r1", value=None, valid=False)])
    t = P.convert(get_protocol("rating-1-7"), v, _responses())
    assert t["score"].tolist() == [6] and t["response_id"].tolist() == ["i1r0"]


def test_config_names_checked():
    from sflib.study.config import StudyConfigError, validate

    raw = yaml.safe_load((ROOT / "studies" / "example.yaml").read_text(encoding="utf-8"))
    base = ROOT / "studies"
    plain = validate(raw, "s.yaml", base)
    assert "protocols" not in plain.model_dump(mode="json")["reward_models"]     # default: the hash is unchanged
    raw["reward_models"]["protocols"] = ["listwise"]
    with pytest.raises(StudyConfigError, match=r"^s.yaml: reward_models.protocols\[0\]: unknown protocol 'listwise'; "
                                               r"known: .*listwise-k.*rubric"):
        validate(raw, "s.yaml", base)
    raw["reward_models"]["protocols"] = ["rubric"]
    raw["evaluation"]["policies"] = ["ratings", "listwise-k"]
    with pytest.raises(StudyConfigError, match=r"evaluation.policies\[1\]: unknown reward model 'listwise-k'"):
        validate(raw, "s.yaml", base)
    raw["evaluation"]["policies"] = ["ratings", "rubric"]
    raw["best_of_n"]["reward_models"] = ["rubric"]
    cfg = validate(raw, "s.yaml", base)
    assert cfg.model_dump(mode="json")["reward_models"]["protocols"] == ["rubric"]


# --------------------------------------------------------------------------- the flow, against the fake server

def _study(tmp: Path, name="protocol-rms", budget=None, judge="fake-structured") -> Path:
    cfg = yaml.safe_load((ROOT / "studies" / "example.yaml").read_text(encoding="utf-8"))
    cfg.update(name=name, budget_usd=budget)
    cfg["instructions"]["paths"] = [str(ROOT / "studies" / "data" / "example_instructions.jsonl")]
    cfg["policy"].update(k=3, max_new_tokens=16)
    cfg["feedback"].update(judge=judge, verdicts="hard", protocols=["listwise-k", "pairwise-5way", "rubric"])
    cfg["reward_models"].update(max_length=64, batch_size=4, epochs=1,
                                protocols=["listwise-k", "pairwise-5way", "rubric"])
    cfg["best_of_n"].update(n=2, sample=3, max_new_tokens=16, reward_models=["ratings", "listwise-k", "pairwise-5way"])
    cfg["evaluation"].update(judge="fake-structured", policies=["ratings", "listwise-k"])
    (tmp / "judges").mkdir(exist_ok=True)
    (tmp / "judges" / "fake-structured.yaml").write_text(
        "provider: openai\nmodel: gpt-4o-mini\nbase_url_env: OPENAI_BASE_URL\nstructured_verdicts: true\n")
    path = tmp / f"{name}-{budget}-{judge}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from fake_openai import serving_study

    out = tmp_path_factory.mktemp("protocol_rms")
    with serving_study(out, "sk-test-protocol-rms") as env:
        yield env


@pytest.mark.slow
def test_protocol_rms_study(env):
    from sflib import study as studies
    from sflib.bon import findings as bon_findings
    from sflib.evaluation import findings as ev_findings
    from sflib.protocols import study as p09
    from sflib.rm import findings as rm_findings
    from sflib.rm import stage as rm
    from sflib.study import stages
    from sflib.study.planner import plan, spent, stage_cost
    from sflib.study.runner import BudgetExceeded

    tmp, server = env
    s = studies.load(_study(tmp))
    stages.responses(s)
    stages.ratings(s)
    stages.rankings(s)
    k = s.read("responses").groupby("instruction_id")["response_id"].nunique()

    # the plan: 05 asks the two protocols (listwise: one call per instruction; 5-way: both orders of every pair);
    # 09's rows of the same protocols are 0 calls, counted in 05
    p = plan(s, total=False)
    rm_rows = p[p["stage"] == "reward_models"].set_index("name")
    assert rm_rows.loc["fake-structured · listwise-k", "calls"] == len(k)
    assert rm_rows.loc["fake-structured · pairwise-5way", "calls"] == int((k * (k - 1)).sum())
    assert rm_rows.loc["fake-structured · rubric", "calls"] == int(k.sum())           # one call per response
    p09_rows = p[p["stage"] == "protocols"].set_index("name")
    assert (p09_rows["calls"] == 0).all() and p09_rows["note"].str.contains("counted there").all()
    cost05 = stage_cost(p, "reward_models")
    assert cost05 > 0
    assert p["calls"].sum() == p[p["stage"] != "protocols"]["calls"].sum()         # nothing counted twice

    # a budget that does not cover 05's protocol answers stops before 05, with the usual message
    tight = studies.load(_study(tmp, budget=round(spent(s) + cost05 / 2, 8)))
    asked = server.requests
    with pytest.raises(BudgetExceeded, match=r"stopping before 05_reward_models: .* for stage reward_models would "
                                             r"exceed budget_usd"):
        studies.run(tight, only="05", quick=True, progress=False, log=lambda *_: None)
    assert server.requests == asked

    # a recorded judge has no answers for these protocols: the RM is not trained, with the reason
    recorded = studies.load(_study(tmp, name="protocol-rms-recorded", judge="recorded"))
    recorded.save("responses", tables={"responses": s.read("responses")})
    got = P.collect(recorded)
    assert set(got) == {"listwise-k", "pairwise-5way", "rubric"} and all("recorded" in d.why for d in got.values())

    # 05 -> 07 through the study runner (notebooks, quick mode): the two protocol RMs, trained with the same
    # trainer and split; 06 picks with each; 07 evaluates the listwise policy beside the ratings one
    studies.run(s, only="05", quick=True, progress=False, log=lambda *_: None)
    assert server.requests == asked + len(k) + int((k * (k - 1)).sum()) + int(k.sum())  # 05 asked each call once
    studies.run(s, only="06,07", quick=True, progress=False, log=lambda *_: None)
    metrics = json.loads(s.path_of("reward_models", "metrics.json").read_text())
    assert {"ratings", "rankings", "listwise-k", "pairwise-5way", "rubric"} <= set(metrics["trained"])
    verdicts = P.collect(s)["listwise-k"]                                          # from the store: nothing asked
    assert verdicts.asked == len(k) and verdicts.valid == len(k)
    run05 = rm.load(s)
    # by hand: every instruction's k(k-1)/2 pairs; the training rows are those of the training instructions
    train_ids = sorted(set(k.index) - set(run05.val_ids))
    assert run05.val_ids and train_ids
    assert len(s.read("reward_models", "protocol_listwise-k")) == int((k * (k - 1) / 2).sum())
    assert metrics["trained"]["listwise-k"]["counts"]["train"]["used"] == int((k[train_ids] * (k[train_ids] - 1) / 2).sum())
    rm_json = json.loads((s.path_of("reward_models", "listwise-k") / "reward_model.json").read_text())
    assert rm_json["kind"] == "rankings"
    assert json.loads((s.path_of("reward_models", "rubric") / "reward_model.json").read_text())["kind"] == "ratings"
    rubric = s.read("reward_models", "protocol_rubric")                            # one 1-7 score per response
    assert len(rubric) == int(k.sum()) and rubric["score"].between(1, 7).all()
    f05 = rm_findings.findings(s, run05, quick=True)
    own = f05.tables["protocol reward models"]
    assert list(own.index) == ["listwise-k RM", "pairwise-5way RM", "rubric RM"] and own["trained"].all()
    assert (own["held-out pairs"] > 0).all() and own["accuracy"].between(0, 1).all()
    held_k = k[sorted(run05.val_ids)]
    assert own.loc["listwise-k RM", "held-out pairs"] == int((held_k * (held_k - 1) / 2).sum())
    assert {"listwise-k RM", "pairwise-5way RM", "rubric RM"} <= set(f05.tables["held-out"].index)
    assert any("not Plackett-Luce" in n for n in f05.notes)
    assert metrics["protocols"]["listwise-k"]["held-out pairs"] == own.loc["listwise-k RM", "held-out pairs"]

    assert "listwise-k_outputs.json" in s.manifest("best_of_n")["files"]
    f06 = bon_findings.findings(s, quick=True)
    assert {"ratings RM", "listwise-k RM", "pairwise-5way RM"} <= set(f06.tables["selection"].index)
    assert f06.tables["reward models"]["used"].all()
    # read back from 06's folder, the table still says what each RM was trained on (from 05's reward_model.json)
    assert f06.tables["reward models"].loc["listwise-k RM", "trained on"] == "listwise-k as rankings"
    assert f06.tables["reward models"].loc["ratings RM", "trained on"] == "ratings"
    assert f06.tables["reward models"]["backbone"].notna().all()
    f07 = ev_findings.findings(s, quick=True)
    assert set(f07.tables["win rates"]["policy"]) == {"ratings-RM", "listwise-k-RM"}
    assert set(f07.tables["protocol effect"]["policy"]) == {"ratings-RM", "listwise-k-RM"}
    assert set(zip(f07.tables["policies compared"]["policy_a"], f07.tables["policies compared"]["policy_b"])) == \
        {("ratings-RM", "listwise-k-RM")}
    for nb in ("05_reward_models", "06_best_of_n", "07_evaluation"):
        report = nbcheck.check(s.folder / "notebooks" / f"{nb}.ipynb")
        assert not report["unshown"] and report["noise"] == [], (nb, report)
    assert "listwise-k RM" in (s.folder / "notebooks" / "05_reward_models.ipynb").read_text()

    # 09 finds 05's answers in the store: nothing is asked again
    before = server.requests
    f09 = p09.run(s, progress=False)
    assert server.requests == before
    assert set(f09.runs) == {"listwise-k", "pairwise-5way", "rubric"} and not f09.skipped


def test_split_table_and_notes_without_training():
    """The protocol table splits by 05's held-out instructions; an RM that was not trained has no accuracy and
    its reason; partly unreadable answers are said in the notes; a study without protocols says so."""
    from types import SimpleNamespace

    from sflib.core.findings import Findings

    resp = _responses(k=3)
    v = pd.DataFrame([dict(instruction_id=i, response_ids=[f"{i}r{j}" for j in range(3)], value=["A", "B", "C"],
                           valid=True, k=3) for i in ("i1", "i2")]
                     + [dict(instruction_id="i3", response_ids=["x", "y"], value=None, valid=False, k=2)])
    lw = get_protocol("listwise-k")
    data = {"listwise-k": P.ProtocolData("listwise-k", "rankings", P.conversion(lw), P.convert(lw, v, resp),
                                         asked=3, valid=2),
            "rubric": P.ProtocolData("rubric", "ratings", P.conversion(get_protocol("rubric")), pd.DataFrame(),
                                     why="judge recorded has no answers for rubric")}
    splits = P.split(data, {"i2"})
    assert [len(t) for t in splits["listwise-k"]] == [3, 3] and [len(t) for t in splits["rubric"]] == [0, 0]
    own = P.own_held_out({}, data, splits)
    assert not own["trained"].any() and own["accuracy"].isna().all()
    assert own.loc["rubric RM", "note"] == "judge recorded has no answers for rubric"
    assert own.loc["listwise-k RM", "ties (left out)"] == 0
    f = Findings(stage="05", title="t")
    P.add_findings(f, SimpleNamespace(protocol_held_out=own))
    assert f.tables["protocol reward models"] is own and not f.estimates
    assert any(n.startswith("listwise-k: 1 of 3 answers could not be read") for n in f.notes)
    assert any("not Plackett-Luce" in n for n in f.notes)
    empty = Findings(stage="05", title="t")
    P.add_findings(empty, SimpleNamespace(protocol_held_out=pd.DataFrame()))
    assert "reward_models.protocols" in empty.absent["protocol reward models"]


def test_failed_protocol_calls_leave_05_incomplete(tmp_path, monkeypatch):
    """Judge calls of reward_models.protocols that got no answer are counted, and 05's manifest with them is
    `incomplete` (study run exits 3; --skip-done runs 05 again, which asks only those calls)."""
    from sflib import study as studies
    from sflib.protocols.compare import ProtocolRun
    from sflib.study.folder import retryable_failures

    monkeypatch.setenv("SFLIB_OUTPUTS", str(tmp_path / "out"))
    s = studies.load(_study(tmp_path))
    resp = _responses(k=3)
    s.save("responses", tables={"responses": resp})
    lw = get_protocol("listwise-k")
    v = pd.DataFrame([dict(instruction_id="i1", response_ids=[f"i1r{j}" for j in range(3)], value=["A", "C", "B"],
                           valid=True, status="ok", k=3),
                      dict(instruction_id="i2", response_ids=[f"i2r{j}" for j in range(3)], value=None, valid=False,
                           status="failed", k=3)])
    monkeypatch.setattr("sflib.protocols.study.collect",
                        lambda study, names=None, progress=False: ({"listwise-k": ProtocolRun(lw, v)},
                                                                   {"pairwise-5way": "x", "rubric": "y"}))
    got = P.collect(s)
    assert (got["listwise-k"].asked, got["listwise-k"].valid, got["listwise-k"].failed) == (2, 1, 1)
    assert P.metrics_info(got, pd.DataFrame())["listwise-k"]["failed"] == 1
    assert retryable_failures({"stage": "reward_models", "counts": {"protocol_calls_failed": 1}}) == 1
    assert retryable_failures({"stage": "reward_models", "counts": {"n": 5, "failed": 2}}) == 0  # 05's own rows
