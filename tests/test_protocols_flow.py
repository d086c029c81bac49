"""A study collecting four protocols against the fake server: `study plan` counts each protocol's calls
exactly, 01 -> 03 and 09 run through the study runner, and 09's agreement matrices equal a hand computation
from the saved verdicts (plain loops over the judge's raw answers, not the library's conversions)."""
import json
import os
from itertools import combinations
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytest.importorskip("papermill")

import nbcheck
from fake_openai import serving_study

ROOT = Path(__file__).resolve().parents[1]
PROTOCOLS = ["rating-1-7", "pairwise-3way", "pairwise-5way", "listwise-k"]


def _study(tmp: Path) -> Path:
    cfg = yaml.safe_load((ROOT / "studies" / "example.yaml").read_text(encoding="utf-8"))
    cfg["name"] = "four-protocols"
    cfg["instructions"]["paths"] = [str(ROOT / "studies" / "data" / "example_instructions.jsonl")]
    cfg["instructions"]["sample"] = 4
    cfg["policy"].update(k=3, max_new_tokens=16)
    cfg["feedback"].update(judge="fake-structured", verdicts="hard", protocols=PROTOCOLS)
    cfg["evaluation"]["judge"] = "fake-structured"
    (tmp / "judges").mkdir(exist_ok=True)
    (tmp / "judges" / "fake-structured.yaml").write_text(
        "provider: openai\nmodel: gpt-4o-mini\nbase_url_env: OPENAI_BASE_URL\nstructured_verdicts: true\n")
    path = tmp / "four.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    out = tmp_path_factory.mktemp("protocols")
    with serving_study(out, "sk-test-protocols") as env:
        yield env


def _hand_pairs(name: str, verdicts: pd.DataFrame) -> dict:
    """{(instruction, id1, id2): 'a'|'b'|'equal'} with id1 < id2, from the raw answers by hand."""
    out = {}
    if name == "rating-1-7":
        score = {}
        for iid, rid, raw in zip(verdicts["instruction_id"], verdicts["item"], verdicts["raw"]):
            score.setdefault(iid, {})[rid] = json.loads(raw)["score"]
        for iid, s in score.items():
            for x, y in combinations(sorted(s), 2):
                out[(iid, x, y)] = "a" if s[x] > s[y] else "b" if s[x] < s[y] else "equal"
    elif name == "pairwise-3way":
        for iid, r1, r2, v12, v21 in zip(verdicts["instruction_id"], verdicts["response_id_1"],
                                         verdicts["response_id_2"], verdicts["verdict_12"], verdicts["verdict_21"]):
            first_wins = {("a", "b"): "r1", ("b", "a"): "r2"}.get((v12, v21))
            x, y = sorted([r1, r2])
            out[(iid, x, y)] = "equal" if first_wins is None else "a" if (r1 if first_wins == "r1" else r2) == x else "b"
    elif name == "pairwise-5way":
        acc = {}
        for iid, r1, r2, order, raw in zip(verdicts["instruction_id"], verdicts["response_id_1"],
                                           verdicts["response_id_2"], verdicts["order"], verdicts["raw"]):
            pref = json.loads(raw)["preference"]            # negative: the first-shown output is better
            acc.setdefault((iid, r1, r2), []).append(-pref if order == "12" else pref)   # + : r1 better
        for (iid, r1, r2), s in acc.items():
            m = sum(s)
            x, y = sorted([r1, r2])
            r1_wins = "a" if x == r1 else "b"
            out[(iid, x, y)] = "equal" if m == 0 else r1_wins if m > 0 else {"a": "b", "b": "a"}[r1_wins]
    elif name == "listwise-k":
        for iid, ids, raw in zip(verdicts["instruction_id"], verdicts["response_ids"], verdicts["raw"]):
            ids = json.loads(ids)
            ranking = json.loads(raw)["ranking"]
            rank = {ids["ABCDEFGH".index(lab)]: i for i, lab in enumerate(ranking)}
            for x, y in combinations(sorted(ids), 2):
                out[(iid, x, y)] = "a" if rank[x] < rank[y] else "b"
    return out


@pytest.mark.slow
def test_four_protocols_study(env):
    from sflib import study as studies
    from sflib.study.planner import plan

    tmp, server = env
    s = studies.load(_study(tmp))
    studies.run(s, only="01", quick=False, progress=False, log=lambda *_: None)
    k = s.read("responses").groupby("instruction_id")["response_id"].nunique()
    p = plan(s, total=False)
    calls = p[p["stage"] == "protocols"].set_index("name")["calls"]
    assert calls["fake-structured · listwise-k"] == len(k)                       # one call per instruction
    assert calls["fake-structured · pairwise-5way"] == int((k * (k - 1)).sum())  # both orders of every pair
    # the paper's two protocols are stage 02/03's very calls: counted there, not twice
    assert calls["fake-structured · pairwise-3way"] == 0 and calls["fake-structured · rating-1-7"] == 0
    assert p.set_index("stage").loc["rankings", "calls"] == int((k * (k - 1)).sum())

    studies.run(s, only="02,03,09", quick=False, progress=False, log=lambda *_: None)
    folder = s.folder / "09_protocols"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["protocols"] == PROTOCOLS and not summary["skipped"]
    per = pd.read_json(folder / "protocols.jsonl", lines=True).set_index("protocol")
    assert (per["invalid_rate"] == 0).all() and (per["structured_share"] == 1).all()
    assert per.loc["listwise-k", "calls"] == len(k) and per.loc["pairwise-5way", "calls"] == int((k * (k - 1)).sum())
    assert per["cost_usd"].gt(0).all()                                           # gpt-4o-mini's price

    hand = {n: _hand_pairs(n, pd.read_json(folder / f"{n}.verdicts.jsonl", lines=True, dtype=False))
            for n in PROTOCOLS}
    for x, y in combinations(PROTOCOLS, 2):
        labels = ["a", "b", "equal"]
        m = [[0] * 3 for _ in labels]
        for key in hand[x].keys() & hand[y].keys():
            m[labels.index(hand[x][key])][labels.index(hand[y][key])] += 1
        assert summary["matrices"][f"{x} | {y}"] == m, (x, y)
        assert sum(map(sum, m)) == int((k * (k - 1) / 2).sum())                  # every pair implied by both

    executed = s.folder / "notebooks" / "09_protocols.ipynb"
    report = nbcheck.check(executed)
    assert report["inline_images"] >= 3 and not report["unshown"] and report["noise"] == [], report
    assert (Path(os.environ["SFLIB_FIGURES"]) / "09_protocol_agreement.pdf").exists()

    # read back for the study report (nothing asked): the agreement of every pair from the saved matrices (by hand:
    # the diagonal share) and the notebook's per-protocol table
    from sflib.protocols.study import saved_findings

    asked = server.requests
    back = saved_findings(s)
    assert server.requests == asked
    got = {e.name: e for e in back.estimates}
    for x, y in combinations(PROTOCOLS, 2):
        m = summary["matrices"][f"{x} | {y}"]
        e = got[f"agreement {x} vs {y}"]
        assert e.n == sum(map(sum, m)) and e.value == pytest.approx(100 * sum(m[i][i] for i in range(3)) / e.n)
        assert e.low < e.value <= e.high
    pd.testing.assert_frame_equal(back.tables["protocols"].set_index("protocol"), per, check_dtype=False,
                                  check_exact=False, rtol=1e-9)

    # --skip-done: 09's outputs are current with 01-03 and the feedback section, so it is not run again
    said = []
    studies.run(s, only="09", quick=False, progress=False, log=said.append, skip_done=True)
    assert any("09_protocols.ipynb: its outputs are current" in line for line in said), said
    assert server.requests == asked
