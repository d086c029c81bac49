"""Feedback protocols (sflib.protocols): parsers and conversions on hand-written answers, cross-protocol
agreement on a hand-computed case, calls counted per protocol, structured verdicts against the fake server
(schema validated, answers within it, refusal falls back to text visibly)."""
import json
import logging

import pandas as pd
import pytest

from sflib.protocols import ProtocolError, calls_for, get_protocol, load_protocol, parse_preference, parse_ranking
from sflib.protocols.compare import ProtocolRun, agreement, agreement_matrix, compare
from sflib.protocols.structured import StructuredJudge, request_params, schema_for
from sflib.feedback.parsing import parse_score


# ----------------------------------------------------------------------------- parsers

@pytest.mark.parametrize("text,expected", [
    ('{"score": 6}', (6, True)), ('{"score": 8}', (None, False)), ('{"score": "6"}', (None, False)),
    ('{"score": true}', (None, False)), ("Score: 5\nfine", (5, True)), ('{"score": 6', (None, False)),
    ("I cannot rate this.", (None, False)), ("", (None, False))])
def test_rating_parser(text, expected):
    assert get_protocol("rating-1-7").parse(text) == expected
    assert parse_score(text) == expected


@pytest.mark.parametrize("text,expected", [
    ('{"choice": "Output (b)"}', ("b", True)), ("Output (a)\nbecause", ("a", True)),
    ('{"choice": "neither"}', (None, False)), ("I refuse to choose.", (None, False))])
def test_pairwise3_parser(text, expected):
    assert get_protocol("pairwise-3way").parse(text) == expected


@pytest.mark.parametrize("text,expected", [
    ('{"preference": -2}', (-2, True)), ('{"preference": 0}', (0, True)), ('{"preference": 3}', (None, False)),
    ('{"preference": 1.5}', (None, False)), ('{"preference": "Output (b) is much better"}', (2, True)),
    ("Output (a) is slightly better.", (-1, True)), ("They are about the same.", (0, True)),
    ('{"preference": ', (None, False)), ("I won't judge this.", (None, False))])
def test_pairwise5_parser(text, expected):
    assert parse_preference(text) == expected


@pytest.mark.parametrize("text,expected", [
    ('{"ranking": ["B", "A", "C"]}', (["B", "A", "C"], True)),
    ('{"ranking": ["B", "B", "C"]}', (None, False)),          # not a permutation
    ('{"ranking": ["B", "D", "C"]}', (None, False)),          # a label not shown (A missing)
    ('{"ranking": ["A"]}', (None, False)),
    ("Ranking: C > A > B", (["C", "A", "B"], True)),
    ('{"ranking": ["B", "A"', (None, False)), ("Sorry, I can't rank these.", (None, False))])
def test_listwise_parser(text, expected):
    assert parse_ranking(text) == expected


def test_listwise_parser_checks_k():
    assert parse_ranking('{"ranking": ["B", "A", "C"]}', k=4) == (None, False)


@pytest.mark.parametrize("text,valid", [
    ('{"helpfulness": 4, "correctness": 5, "coherence": 3, "harmlessness": 5}', True),
    ('{"helpfulness": 4, "correctness": 6, "coherence": 3, "harmlessness": 5}', False),   # out of range
    ('{"helpfulness": 4, "correctness": 5}', False),                                       # partial
    ("Helpfulness: 4\nCorrectness: 5\nCoherence: 3\nHarmlessness: 5", True), ("no.", False)])
def test_rubric_parser(text, valid):
    value, ok = get_protocol("rubric").parse(text)
    assert ok is valid
    if valid:
        assert value == {"helpfulness": 4, "correctness": 5, "coherence": 3, "harmlessness": 5}


# ----------------------------------------------------------------------------- conversions

def _responses(k=3, n=2):
    rows = [{"instruction_id": f"i{i}", "response_id": f"i{i}r{j}", "instruction": f"task {i}", "input": "",
             "response": f"response {j} to task {i}"} for i in range(n) for j in range(k)]
    return pd.DataFrame(rows)


def test_listwise_pairs_from_ranking():
    p = get_protocol("listwise-k")
    v = pd.DataFrame({"instruction_id": ["i0"], "response_ids": [["r0", "r1", "r2"]], "value": [["C", "A", "B"]],
                      "valid": [True], "k": [3]})
    pairs = p.pairs(v).set_index(["response_id_1", "response_id_2"])["decision"].to_dict()
    # C (r2) > A (r0) > B (r1)
    assert pairs == {("r0", "r1"): "a", ("r0", "r2"): "b", ("r1", "r2"): "b"}
    assert p.position_bias(v) == {"first_shown_rate": 0.0, "chance": pytest.approx(1 / 3), "n": 1}


def test_pairwise5_orders_averaged():
    p = get_protocol("pairwise-5way")
    v = pd.DataFrame({"instruction_id": ["i0"] * 4, "response_id_1": ["r0", "r0", "r0", "r0"],
                      "response_id_2": ["r1", "r1", "r2", "r2"], "order": ["12", "21", "12", "21"],
                      # r0 vs r1: order 12 says (a)=r0 much better (-2), order 21 says (b)=r0 better (1)
                      # r0 vs r2: order 12 says (a)=r0 better (-1), order 21 says (a)=r2 better (-1): a tie
                      "value": [-2, 1, -1, -1], "valid": [True] * 4})
    pairs = p.pairs(v).set_index("response_id_2")
    assert pairs.loc["r1", "decision"] == "a" and pairs.loc["r1", "strength"] == pytest.approx((1.5 + 2) / 4)
    assert pairs.loc["r2", "decision"] == "equal"
    assert p.position_bias(v)["first_shown_rate"] == pytest.approx(3 / 4)


def test_rating_and_rubric_pairs_from_scores():
    v = pd.DataFrame({"instruction_id": ["i0"] * 3, "item": ["r0", "r1", "r2"], "value": [5, 5, 2],
                      "valid": [True, True, True]})
    pairs = get_protocol("rating-1-7").pairs(v).set_index("response_id_2")["decision"]
    assert list(pairs.items()) == [("r1", "equal"), ("r2", "a"), ("r2", "a")]


# ----------------------------------------------------------------------------- agreement, hand computed

def _pairs(rows):
    return pd.DataFrame([dict(instruction_id="i", response_id_1=a, response_id_2=b, decision=d, strength=0.5)
                         for a, b, d in rows])


def test_agreement_matrix_hand_computed():
    x = _pairs([("r0", "r1", "a"), ("r0", "r2", "a"), ("r1", "r2", "equal"), ("r1", "r3", "b")])
    y = _pairs([("r0", "r1", "a"), ("r0", "r2", "b"), ("r1", "r2", "equal"), ("r2", "r3", "a")])
    m = agreement_matrix(x, y)
    # common pairs: (r0,r1) a/a, (r0,r2) a/b, (r1,r2) equal/equal
    assert m.loc["a", "a"] == 1 and m.loc["a", "b"] == 1 and m.loc["equal", "equal"] == 1 and m.values.sum() == 3
    a = agreement(m)
    assert a["n_pairs"] == 3 and a["agreement"] == pytest.approx(2 / 3)
    # kappa: po = 2/3; row margins a=2, equal=1; column margins a=1, b=1, equal=1 -> pe = (2*1 + 1*1)/9 = 1/3
    assert a["kappa"] == pytest.approx((2 / 3 - 1 / 3) / (1 - 1 / 3))


# ----------------------------------------------------------------------------- files and costs

def test_calls_per_instruction():
    assert [get_protocol(n).calls_per_instruction(5) for n in
            ("rating-1-7", "pairwise-3way", "pairwise-5way", "listwise-k", "rubric")] == [5, 20, 20, 1, 5]
    with pytest.raises(ValueError):
        calls_for("__import__('os')", 3)


def test_items_match_calls():
    r = _responses(k=4, n=3)
    for name in ("rating-1-7", "pairwise-3way", "pairwise-5way", "listwise-k", "rubric"):
        p = get_protocol(name)
        assert len(list(p.items(r))) == 3 * p.calls_per_instruction(4), name


def test_user_protocol_file(tmp_path):
    (tmp_path / "my_v1.txt").write_text("{task}\n\n{output_a}\n---\n{output_b}\nWhich is better? JSON.")
    (tmp_path / "my_v1_system.txt").write_text("Judge.")
    f = tmp_path / "my-5way.yaml"
    f.write_text("class: pairwise-5way\ntemplate: my_v1\ncalls: k*(k-1)\nboth_orders: true\n")
    p = load_protocol(f)
    assert p.name == "my-5way" and p.messages(task="T", output_a="A", output_b="B")[1]["content"].startswith("T")
    bad = tmp_path / "bad.yaml"
    bad.write_text("class: pairwise-5way\ntemplate: my_v1\nbogus: 1\n")
    with pytest.raises(ProtocolError, match="bogus"):
        load_protocol(bad)
    with pytest.raises(ProtocolError, match="unknown protocol"):
        get_protocol("no-such-protocol")


# ----------------------------------------------------------------------------- structured verdicts

def test_request_params_styles():
    schema = get_protocol("listwise-k").request_schema(3)
    openai = request_params(schema, "json_schema")["response_format"]
    assert openai["type"] == "json_schema" and openai["json_schema"]["strict"] is True
    assert "uniqueItems" not in json.dumps(openai)          # OpenAI strict mode refuses it
    assert request_params(schema, "json_object")["response_format"]["schema"] == schema
    assert request_params(schema, "guided_json") == {"extra_body": {"guided_json": schema}}


def _judge(server, **kw):
    from sflib.judges.openai_judge import OpenAIJudge

    return StructuredJudge(OpenAIJudge("gpt-4o-mini", base_url=server.url, api_key="sk-test", max_retries=0, **kw),
                           "json_schema")


@pytest.mark.parametrize("name", ["rating-1-7", "pairwise-5way", "listwise-k", "rubric"])
def test_structured_against_fake_server(fake_openai, tmp_path, name):
    p = get_protocol(name)
    v = p.acquire(_responses(k=3, n=2), _judge(fake_openai), store=tmp_path / "s.sqlite", progress=False)
    assert v["valid"].all(), v[["raw", "error"]]
    # the generic path records the format asked for; rating-1-7 (through rate()) the format the answer came in
    assert v["verdict_format"].isin(["json_schema", "json"]).all()
    assert all(r.strip().startswith("{") for r in v["raw"])
    assert fake_openai.outcomes.get("refused", 0) == 0      # every schema sent was a valid JSON schema
    assert len(p.pairs(v)) == 2 * 3                         # 3 pairs per instruction implied


def test_fake_server_refuses_an_invalid_schema(fake_openai):
    from sflib.judges.base import Request
    from sflib.judges.openai_judge import OpenAIJudge

    j = OpenAIJudge("gpt-4o-mini", base_url=fake_openai.url, api_key="sk-test", max_retries=0)
    bad = Request(messages=[{"role": "user", "content": "x"}],
                  params=request_params({"type": "no-such-type"}, "json_object"))
    (_, c), = list(j.complete([bad]))
    assert not c.ok and "invalid JSON schema" in c.error


def test_refusal_falls_back_to_text_visibly(fake_openai_factory, tmp_path, caplog):
    server = fake_openai_factory(structured=False)
    judge = _judge(server)
    with caplog.at_level(logging.WARNING):
        v = get_protocol("rating-1-7").acquire(_responses(k=3, n=1), judge, store=tmp_path / "s.sqlite",
                                               progress=False)
    assert v["valid"].all()                                   # the text parser read the free-text answers
    assert (v["verdict_format"] == "text").all()
    assert "refused structured verdicts" in caplog.text
    assert judge.counts["fallback"] >= 1 and server.outcomes["refused"] >= 1
    # a protocol asked through the generic path records the refusal per answer (the store's meta)
    v5 = get_protocol("pairwise-5way").acquire(_responses(k=2, n=1), judge, store=tmp_path / "s.sqlite",
                                               progress=False)
    assert all(f.startswith("text (server refused json_schema") for f in v5["verdict_format"])


def test_schema_for_paper_requests():
    from sflib.feedback.ratings import rating_request

    assert schema_for(rating_request("t", "", "r"))["properties"]["score"]["maximum"] == 7


def test_preference_pairs_layout_for_the_rankings_rm():
    from sflib.protocols.study import preference_pairs

    r = _responses(k=3, n=1)
    v = pd.DataFrame({"instruction_id": ["i0"], "response_ids": [["i0r0", "i0r1", "i0r2"]],
                      "value": [["B", "C", "A"]], "valid": [True], "k": [3]})
    out = preference_pairs(ProtocolRun(get_protocol("listwise-k"), v), r)
    assert list(out[["response1", "response2", "decision"]].itertuples(index=False, name=None)) == [
        ("response 0 to task 0", "response 1 to task 0", "b"), ("response 0 to task 0", "response 2 to task 0", "b"),
        ("response 1 to task 0", "response 2 to task 0", "a")]


def test_study_file_names_protocols(tmp_path):
    from sflib.study.config import StudyConfigError, validate

    cfg = validate({"name": "p", "feedback": {"protocols": ["rating-1-7", "listwise-k"]}})
    assert cfg.feedback.protocols == ["rating-1-7", "listwise-k"]
    assert "protocols" not in cfg.model_dump()["feedback"]   # only stage 09 depends on it: 02/03 stay current
    with pytest.raises(StudyConfigError, match=r"feedback.protocols\[1\]: unknown protocol 'nope'"):
        validate({"name": "p", "feedback": {"protocols": ["rating-1-7", "nope"]}})


def test_compare_per_protocol_table():
    p3 = get_protocol("pairwise-3way")
    v3 = pd.DataFrame({"instruction_id": ["i"] * 3, "response_id_1": ["r0", "r0", "r1"],
                       "response_id_2": ["r1", "r2", "r2"], "value": ["a", "equal", "b"],
                       "verdict_12": ["a", "a", "b"], "verdict_21": ["b", "a", "a"], "valid": [True] * 3,
                       "prompt_tokens": [100] * 3, "completion_tokens": [10] * 3, "verdict_format": ["text"] * 3})
    vl = pd.DataFrame({"instruction_id": ["i"], "response_ids": [["r0", "r1", "r2"]], "value": [["A", "B", "C"]],
                       "valid": [True], "k": [3], "prompt_tokens": [200], "completion_tokens": [10],
                       "verdict_format": ["json_schema"]})
    res = compare({"pairwise-3way": ProtocolRun(p3, v3, judge="openai:gpt-4o-mini"),
                   "listwise-k": ProtocolRun(get_protocol("listwise-k"), vl, judge="openai:gpt-4o-mini")})
    per = res["protocols"].set_index("protocol")
    assert per.loc["pairwise-3way", "calls"] == 6 and per.loc["listwise-k", "calls"] == 1
    assert per.loc["pairwise-3way", "tie_rate"] == pytest.approx(1 / 3)
    assert per.loc["pairwise-3way", "first_shown_rate"] == pytest.approx(4 / 6)
    # listwise A>B>C: (r0,r1) a, (r0,r2) a, (r1,r2) a; pairwise-3way: a, equal, b -> 1 of 3 agree
    assert per.loc["listwise-k", "agreement_with_reference"] == pytest.approx(1 / 3)
    cost = (200 * 0.15 + 10 * 0.60) / 1e6
    assert per.loc["listwise-k", "cost_usd"] == pytest.approx(cost)
    assert per.loc["listwise-k", "agreement_per_dollar"] == pytest.approx((1 / 3) / cost)
    assert per.loc["listwise-k", "structured_share"] == 1.0
