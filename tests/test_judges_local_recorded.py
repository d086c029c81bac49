"""RecordedJudge (replays the paper's GPT-3.5 feedback exactly) and LocalJudge (batched greedy generation)."""

import pandas as pd
import pytest

from sflib.core import data as d
from sflib import io as sfio
from sflib.judges import get_judge
from sflib.judges.base import Request
from sflib.judges.recorded import RecordedJudge
from sflib.core.paths import data_dir
from sflib.feedback.rankings import make_pairs, position_bias, rank
from sflib.feedback.ratings import rate

ORIGINAL = data_dir() / "original" / "alpaca_generation"
RATINGS_CSV = ORIGINAL / "feedback_ratings_sample_generation.csv"
RANKINGS_CSV = ORIGINAL / "feedback_rankings_sample_generation.csv"


@pytest.fixture(scope="module")
def recorded():
    return get_judge(f"recorded:{RATINGS_CSV},{RANKINGS_CSV}")


def test_recorded_judge_reproduces_all_99_ratings(recorded):
    assert isinstance(recorded, RecordedJudge) and recorded.name.startswith("recorded:")
    truth = sfio.read_ratings(RATINGS_CSV)
    assert len(truth) == 99
    out = rate(truth.drop(columns="score"), recorded, store=False, progress=False)
    assert out["valid"].all()
    assert out["score"].astype(int).tolist() == truth["score"].tolist()  # repeated responses included
    assert out["raw"].str.match(r"Score: [1-7]\n\(recorded in feedback_ratings_sample_generation.csv\)").all()
    assert out.attrs["stats"]["cost_usd"] == 0 and out.attrs["stats"]["prompt_tokens"] == 0


def test_recorded_judge_reproduces_all_118_decisions_from_both_orders(recorded):
    truth = sfio.read_rankings(RANKINGS_CSV)
    assert len(truth) == 118
    out = rank(truth.drop(columns="decision"), recorded, store=False, progress=False)
    assert out["valid"].all()
    assert out["decision"].tolist() == truth["decision"].tolist()
    # 'a' -> (a) then (b); 'b' -> (b) then (a); 'equal' -> (a) in both orders
    expected_12 = truth["decision"].map({"a": "a", "b": "b", "equal": "a"})
    expected_21 = truth["decision"].map({"a": "b", "b": "a", "equal": "a"})
    assert out["verdict_12"].tolist() == expected_12.tolist() and out["verdict_21"].tolist() == expected_21.tolist()
    pb = position_bias(out)
    n_equal = int((truth["decision"] == "equal").sum())
    assert pb["pairs"] == 118 and pb["disagreement_rate"] == pytest.approx(n_equal / 118)
    assert pb["first_first"] == n_equal and pb["second_second"] == 0


def test_sample_through_recorded_judge_shows_unrecorded_items_as_failures(recorded):
    responses = sfio.read_responses(ORIGINAL / "sample_generation.json")
    ratings = rate(responses, recorded, store=False, progress=False)
    assert len(ratings) == 100  # nothing dropped
    failed = ratings[ratings["status"] == "failed"]
    # the one response the original script lost (never rated) is a visible failure
    unrated = set(responses["response_id"]) - set(sfio.read_ratings(RATINGS_CSV)["response_id"])
    assert len(failed) == 1 and set(failed["response_id"]) == unrated
    message = failed["error"].iloc[0]
    assert message.startswith("no recorded rating for instruction " + failed["instruction_id"].iloc[0])
    assert "feedback_ratings_sample_generation.csv" in message and pd.isna(failed["score"].iloc[0])

    pairs = make_pairs(responses)
    rankings = rank(pairs, recorded, store=False, progress=False)
    assert len(rankings) == len(pairs) == 192  # 20 x 10 pairs, less 8 involving a repeated response
    assert (rankings["status"] == "ok").sum() == 116  # 118 recorded, 2 of them pair a response with itself
    bad = rankings[rankings["status"] == "failed"]
    assert bad["decision"].isna().all() and bad["error"].str.contains("no recorded ranking for instruction").all()


def test_recorded_judge_from_canonical_tables_and_rank_outputs(tmp_path, recorded):
    # a rate() output is itself a recording (invalid rows are not answers)
    ratings = sfio.read_ratings(RATINGS_CSV).iloc[:10].copy()
    ratings["score"] = ratings["score"].astype(float)
    ratings.loc[3, "score"] = float("nan")
    sfio.write_table(ratings, tmp_path / "ratings.parquet")
    judge = RecordedJudge([tmp_path / "ratings.parquet"])
    out = rate(ratings.drop(columns="score"), judge, store=False, progress=False)
    assert out["status"].tolist() == ["ok"] * 3 + ["failed"] + ["ok"] * 6
    assert out["score"].drop(index=3).tolist() == ratings["score"].drop(index=3).tolist()

    # a rank() output with per-order verdicts is replayed per order (position bias preserved)
    pairs = sfio.read_rankings(RANKINGS_CSV).iloc[:12].drop(columns="decision")
    first = rank(pairs, recorded, store=False, progress=False)
    first.loc[0, "verdict_12"] = "b"  # a made-up verdict: 'b' then 'a' -> decision 'b'
    sfio.write_table(first, tmp_path / "rankings.jsonl")
    replay = rank(pairs, RecordedJudge(tmp_path / "rankings.jsonl"), store=False, progress=False)
    assert replay["verdict_12"].tolist() == first["verdict_12"].tolist()
    assert replay["verdict_21"].tolist() == first["verdict_21"].tolist()


def test_recorded_judge_errors_are_clear(tmp_path, recorded):
    with pytest.raises(d.DataError, match="not found"):
        RecordedJudge([tmp_path / "missing.csv"])
    (tmp_path / "three.csv").write_text("a,b,c\n")
    with pytest.raises(d.DataError, match="4 .*or 5"):
        RecordedJudge([tmp_path / "three.csv"])
    sfio.write_table(pd.DataFrame({"instruction": ["x"], "output": ["y"]}), tmp_path / "outputs.jsonl")
    with pytest.raises(d.DataError, match="neither a ratings table"):
        RecordedJudge([tmp_path / "outputs.jsonl"])
    [(_, c)] = list(recorded.complete([Request(messages=[], meta={"kind": "summary", "instruction": "x"})]))
    assert not c.ok and "cannot answer" in c.error
    [(_, c)] = list(recorded.complete([Request(messages=[], meta={})]))
    assert not c.ok and "meta lacks" in c.error


# ----------------------------------------------------------------------------- LocalJudge

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A randomly initialised 2-layer Llama with a 300-token byte-level BPE and a chat template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama")
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<eos>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(["Rate the response on a scale from 1 to 7. Score: 6", "Output (a) Output (b)"] * 5,
                            trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
                         initializer_range=0.5)
    LlamaForCausalLM(config).save_pretrained(folder)
    return str(folder)


def test_local_judge_batches_with_left_padding(tiny_model):
    from sflib.judges.local import LocalJudge

    requests = [Request(messages=[{"role": "user", "content": "Score: 6 " * n}]) for n in (1, 7, 3, 12)]
    batched = LocalJudge(tiny_model, max_new_tokens=6, batch_size=3)
    single = LocalJudge(tiny_model, max_new_tokens=6, batch_size=1)
    assert batched.name == f"local:{tiny_model}" and batched.params == {"max_new_tokens": 6, "do_sample": False}
    got = dict(batched.complete(requests))
    ref = dict(single.complete(requests))
    assert sorted(got) == [0, 1, 2, 3]
    assert all(c.ok for c in got.values())
    # left padding must not change what greedy decoding produces
    assert [got[i].text for i in range(4)] == [ref[i].text for i in range(4)]
    assert [got[i].prompt_tokens for i in range(4)] == [ref[i].prompt_tokens for i in range(4)]
    assert got[0].prompt_tokens < got[2].prompt_tokens < got[1].prompt_tokens < got[3].prompt_tokens
    assert all(0 < got[i].completion_tokens <= 6 for i in range(4)) or any(got[i].text == "" for i in range(4))


def test_local_judge_through_rate_and_store(tiny_model, tmp_path):
    judge = get_judge(f"local:{tiny_model}", max_new_tokens=4, batch_size=2)
    df = pd.DataFrame({"instruction": ["Say hi.", "Count to two."], "input": ["", ""], "response": ["hi", "1 2"]})
    out = rate(df, judge, store=tmp_path / "s.sqlite", progress=False)
    assert len(out) == 2 and set(out["status"]) <= {"ok", "invalid"}  # a random model: replies kept either way
    assert out["raw"].notna().all() and (out["prompt_tokens"] > 100).all()
    again = rate(df, judge, store=tmp_path / "s.sqlite", progress=False)
    assert again.attrs["stats"]["called"] == 0 and again["raw"].tolist() == out["raw"].tolist()


def test_recorded_alone_means_the_vendored_paper_feedback():
    from sflib.judges.recorded import PAPER_JUDGE, vendored_feedback_files
    from sflib.feedback.ratings import resolve_judge

    judge = resolve_judge("recorded")
    assert judge.name == PAPER_JUDGE and judge.files == vendored_feedback_files()
    assert all(f.exists() for f in judge.files) and len(judge.files) == 5
    # the evaluation judgments are answered too: davinci-003 vs ratings-RM rankings (46 recorded)
    evals = sfio.read_rankings(data_dir() / "original" / "inference_model_outputs" /
                                "feedback_rankings_davincivsratings_for_llm_eval.csv")
    out = rank(evals.drop(columns="decision"), judge, store=False, progress=False)
    assert out["decision"].tolist() == evals["decision"].tolist()


def test_recorded_judge_gaps_are_not_recorded_not_a_retry_warning(caplog):
    """An item the recorded judge lacks is reported as 'not recorded' (info), never as a failure to retry."""
    import logging

    import pandas as pd

    from sflib.feedback.ratings import rate

    df = pd.DataFrame({"instruction": ["An instruction nobody recorded."], "input": [""], "response": ["x"]})
    with caplog.at_level(logging.INFO, logger="sflib.feedback.annotate"):
        out = rate(df, "recorded", store=False, progress=False)
    assert out["status"].tolist() == ["failed"]
    assert "not recorded" in caplog.text and "retries" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
