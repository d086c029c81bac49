"""Logprob-weighted verdicts: the pure math, and end to end through the fake server and the store."""
import math

import pytest

from sflib.feedback import logprobs as lp
from sflib.feedback.annotate import annotate
from sflib.judges.base import Request
from sflib.judges.openai_judge import OpenAIJudge
from sflib.feedback.parsing import parse_choice, parse_score
from sflib.feedback.store import AnnotationStore


def toks(*items):
    """[[token, {alt: logprob}]] from (token, {alt: probability}) pairs."""
    return [[t, {a: math.log(p) for a, p in alts.items()}] for t, alts in items]


def test_expected_score_at_the_score_position():
    seq = toks(("Score", {"Score": 1.0}), (":", {":": 1.0}), (" 5", {" 5": 0.5, "4": 0.25, "6": 0.2,
                                                                    "eight": 0.05}))
    value, summary = lp.expected_score(seq, hard=5)
    # renormalised over 1..7 only: (5*.5 + 4*.25 + 6*.2) / .95
    assert value == pytest.approx((2.5 + 1.0 + 1.2) / 0.95)
    assert summary["source"] == "logprobs" and summary["position"] == 2 and summary["token"] == " 5"
    assert summary["mass"] == pytest.approx(0.95) and sum(summary["probs"].values()) == pytest.approx(1)


def test_same_digit_with_and_without_space_is_summed():
    probs = lp.verdict_distribution({"5": math.log(0.3), " 5": math.log(0.3), "7": math.log(0.4)},
                                    lp.SCORES)
    assert probs["5"] == pytest.approx(0.6) and probs["7"] == pytest.approx(0.4) and probs["1"] == 0


def test_fallbacks_say_why():
    assert lp.expected_score(None, hard=6) == (6.0, {"source": "text",
                                                     "reason": "provider returned no logprobs"})
    value, summary = lp.expected_score(toks(("Good", {"Good": 1.0})), hard=None)
    assert value is None and "no score token" in summary["reason"]
    assert lp.p_first(None, hard="b")[0] == 0.0 and lp.p_first(None, hard="a")[0] == 1.0
    assert lp.p_first([], hard=None)[0] is None


def test_p_first_uses_the_label_after_the_parenthesis():
    seq = toks(("A", {"A": 1.0}), (" good", {" good": 1.0}), (" Output", {" Output": 1.0}),
               (" (", {" (": 1.0}), ("b", {"b": 0.8, "a": 0.2}), (")", {")": 1.0}))
    value, summary = lp.p_first(seq)
    assert value == pytest.approx(0.2) and summary["position"] == 4  # not the leading "A"


def test_position_correction_across_orders():
    # order 12: P(first shown = response 1 wins) = .8; order 21: P(first shown = response 2 wins) = .6
    assert lp.position_corrected(0.8, 0.6) == pytest.approx((0.8 + 0.4) / 2)
    # a judge that always prefers the first position says nothing about the pair
    assert lp.position_corrected(0.9, 0.9) == pytest.approx(0.5)
    assert lp.position_corrected(0.7, None) == 0.7 and lp.position_corrected(None, 0.7) == pytest.approx(0.3)
    assert lp.position_corrected(float("nan"), None) is None
    out = lp.combine_orders([0.8, None], [0.6, None])
    assert out[0] == pytest.approx(0.6) and math.isnan(out[1])
    assert lp.reader_for(parse_score) is lp.expected_score and lp.reader_for(parse_choice) is lp.p_first


def rating(n):
    return [Request([{"role": "user", "content": f"Rate on a scale of 1 to 7. Item {i}"}]) for i in range(n)]


def test_end_to_end_soft_scores_are_stored_beside_the_text_verdict(fake_openai_factory, tmp_path):
    server = fake_openai_factory(score_probs={"3": 0.5, "5": 0.5})
    judge = OpenAIJudge("gpt-4o-mini", base_url=server.url, api_key="sk", logprobs=True, top_logprobs=20)
    store = AnnotationStore(tmp_path / "s.sqlite")
    df = annotate(judge, rating(5), store=store, template_version="v", parse=parse_score, progress=False)
    assert df["soft"].sub(4.0).abs().max() < 1e-6 and (df["soft_source"] == "logprobs").all()
    assert df["value"].between(1, 7).all()  # the text verdict is kept as it was
    row = store.get(df["key"].iloc[0])
    assert row["soft"] == pytest.approx(4.0) and row["logprobs"]["source"] == "logprobs"
    assert len(str(row["logprobs"])) < 300  # a summary, not the payload
    again = annotate(judge, rating(5), store=store, template_version="v", parse=parse_score,
                     progress=False)
    assert again["cached"].all() and list(again["soft"]) == list(df["soft"])


def test_pairs_give_p_first_and_a_provider_without_logprobs_falls_back_visibly(fake_openai_factory):
    pair = [Request([{"role": "user", "content": f"Which is better, Output (a) or Output (b)? {i}"}])
            for i in range(6)]
    server = fake_openai_factory(choice_p=0.9)
    judge = OpenAIJudge("gpt-4o-mini", base_url=server.url, api_key="sk", logprobs=True, top_logprobs=5)
    df = annotate(judge, pair, store=None, template_version="v", parse=parse_choice, progress=False)
    expected = [0.9 if v == "a" else 0.1 for v in df["value"]]
    assert df["soft"].tolist() == pytest.approx(expected) and df.attrs["stats"]["logprobs_missing"] == 0

    plain = fake_openai_factory(logprobs=False)
    judge = OpenAIJudge("gpt-4o-mini", base_url=plain.url, api_key="sk", logprobs=True, top_logprobs=5)
    df = annotate(judge, pair, store=None, template_version="v", parse=parse_choice, progress=False)
    assert (df["soft_source"] == "text").all() and df.attrs["stats"]["logprobs_missing"] == 6
    assert df["soft"].tolist() == [1.0 if v == "a" else 0.0 for v in df["value"]]
