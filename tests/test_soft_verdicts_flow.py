"""Logprob-weighted verdicts and batch mode reach the feedback tables: rate() gets ``expected_score``,
rank() gets a position-corrected ``p_a``, consistency can use them, and ``--mode batch`` works from the CLI."""
import pandas as pd
import pytest

from sflib import consistency
from sflib.judges.openai_judge import OpenAIJudge
from sflib.feedback.rankings import make_pairs, rank
from sflib.feedback.ratings import rate

RESPONSES = pd.DataFrame({
    "instruction": ["Name a colour."] * 3 + ["Add 2 and 2."] * 3,
    "input": [""] * 6,
    "response": ["Red.", "Blue is a colour.", "I like turtles.", "4", "Four.", "22"],
})


def test_rate_and_rank_carry_soft_verdicts(fake_openai_factory, tmp_path):
    server = fake_openai_factory(score_probs={"3": 0.5, "5": 0.5}, choice_p=0.8)
    judge = OpenAIJudge("gpt-4o-mini", base_url=server.url, api_key="sk", logprobs=True, top_logprobs=20)
    ratings = rate(RESPONSES, judge, store=tmp_path / "s.sqlite", progress=False)
    assert ratings["expected_score"].tolist() == pytest.approx([4.0] * 6)   # 0.5*3 + 0.5*5
    assert ratings["score"].between(1, 7).all()                              # the text verdict is kept
    rankings = rank(make_pairs(RESPONSES), judge, store=tmp_path / "s.sqlite", progress=False)
    # the fake judge puts 0.8 on the letter it writes; p_a combines both orders: (p12 + 1 - p21) / 2
    p12 = [0.8 if v == "a" else 0.2 for v in rankings["verdict_12"]]
    p21 = [0.8 if v == "a" else 0.2 for v in rankings["verdict_21"]]
    assert rankings["p_a"].tolist() == pytest.approx([(x + 1 - y) / 2 for x, y in zip(p12, p21)])
    soft = consistency.report(ratings, rankings, bootstrap=0, verdicts="soft")
    assert soft.verdicts == "soft"


def test_text_only_provider_gives_no_soft_values(fake_openai_factory, tmp_path, caplog):
    server = fake_openai_factory(logprobs=False)
    judge = OpenAIJudge("gpt-4o-mini", base_url=server.url, api_key="sk", logprobs=True, top_logprobs=20)
    ratings = rate(RESPONSES, judge, store=False, progress=False)
    assert "without usable logprobs" in caplog.text            # said once, visibly
    assert ratings["expected_score"].isna().all()     # a verdict re-read from text is not a soft verdict
    assert ratings["valid"].all()


def test_cli_rate_in_batch_mode(fake_openai_factory, tmp_path, monkeypatch, capsys):
    from sflib.cli import main

    server = fake_openai_factory()
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    src = tmp_path / "responses.jsonl"
    RESPONSES.to_json(src, orient="records", lines=True)
    out = tmp_path / "ratings.jsonl"
    code = main(["rate", "--judge", "openai:gpt-4o-mini", "--input", str(src), "--output", str(out),
                 "--store", str(tmp_path / "s.sqlite"), "--mode", "batch", "--quiet"])
    assert code == 0, capsys.readouterr().err
    got = pd.read_json(out, lines=True)
    assert len(got) == 6 and got["score"].between(1, 7).all()
    assert server.batch.uploads == 1 and server.batch.batches_created == 1 and server.batch.batch_lines == 6


def test_a_judge_file_can_ask_for_logprobs(fake_openai_factory, tmp_path, monkeypatch):
    from sflib.judges import get_judge

    server = fake_openai_factory(score_probs={"6": 1.0})
    cfg = tmp_path / "soft-judge.yaml"
    cfg.write_text("provider: openai\nmodel: fake-judge\nbase_url_env: SOFT_JUDGE_URL\nlogprobs: true\ntop_logprobs: 5\n")
    monkeypatch.setenv("SOFT_JUDGE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    ratings = rate(RESPONSES.head(2), get_judge(str(cfg)), store=False, progress=False)
    assert ratings["expected_score"].tolist() == pytest.approx([6.0, 6.0])
    bad = tmp_path / "bad.yaml"
    bad.write_text("provider: openai\nmodel: m\nlogprobs: 'yes'\n")
    with pytest.raises(ValueError, match="logprobs"):
        get_judge(str(bad))
