"""Reward models (stage 05): losses, batching, truncation, LoRA save/reload, resume, bad input.

Tiny random-initialised BERT / Llama models saved to a temporary folder keep these tests quick;
one test loads the bundled SmolLM2 as a sequence classifier.
"""
from __future__ import annotations

import json
import math
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest
import torch

from sflib.core.prompts import PROMPT_FORMAT
from sflib.rm.trainer import RewardTrainer
from sflib.generation import models
from sflib import rm as R
from sflib.core.data import DataError, make_id

torch.set_num_threads(2)


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A 2-layer, 32-wide BERT with the MiniLM tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny_bert")
    tok = AutoTokenizer.from_pretrained(models.minilm_path())
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A 2-layer Llama with the SmolLM2 tokenizer (its pad token is <|im_end|>)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny_llama")
    tok = AutoTokenizer.from_pretrained(models.smollm2_path())
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _ratings(n_instr=6, k=3):
    rows = []
    for i in range(n_instr):
        for j in range(k):
            rows.append({"instruction": f"Task {i}: describe animal number {i}.", "input": "" if i % 2 else f"context {i}",
                         "response": f"Answer {j} " + "word " * (3 + 5 * j + i), "score": 1 + (i + 2 * j) % 7})
    df = pd.DataFrame(rows)
    df["instruction_id"] = [make_id(a, b) for a, b in zip(df["instruction"], df["input"])]
    return df


def _rankings(n_instr=6):
    rows = []
    for i in range(n_instr):
        for j, d in enumerate(["a", "b", "equal"]):
            rows.append({"instruction": f"Task {i}: describe animal number {i}.", "input": "",
                         "response1": f"first {j} " + "good " * (2 + j + i), "response2": f"second {j} " + "bad " * (1 + i),
                         "decision": d})
    return pd.DataFrame(rows)


FAST = dict(epochs=1, batch_size=4, max_length=64, progress=False, save_checkpoints=False, logging_steps=1)


# ----------------------------------------------------------------------------- losses

def test_losses_match_hand_computation(bert_dir, tmp_path):
    # the pure loss functions
    r = torch.tensor([0.0, 1.0])
    expected = ((0.5 - 0.0) ** 2 + (1 / (1 + math.e ** -1) - 1.0) ** 2) / 2
    assert R.ratings_loss(r, R.score_to_target(torch.tensor([1.0, 7.0]))).item() == pytest.approx(expected, rel=1e-6)
    a, b = torch.tensor([2.0, -1.0, 0.3]), torch.tensor([0.5, 1.0, 0.3])
    bt = [math.log1p(math.exp(-(x - y - 0.2))) for x, y in zip(a.tolist(), b.tolist())]
    tie = 0.5 * (math.log1p(math.exp(-0.0)) * 2)
    assert R.bradley_terry_loss(a, b, margin=0.2).item() == pytest.approx(sum(bt) / 3, rel=1e-6)
    ties = torch.tensor([False, False, True])
    assert R.bradley_terry_loss(a, b, 0.2, ties).item() == pytest.approx((bt[0] + bt[1] + tie) / 3, rel=1e-6)

    # the Trainer's compute_loss on a real collated batch equals the hand computation from the rewards
    from transformers import TrainingArguments

    tok = R.load_tokenizer(bert_dir)
    model = R.load_backbone(bert_dir, tok).eval()
    ratings = _ratings()[:3]
    ds = R.RatingsDataset(R.encode(tok, ratings.instruction.tolist(), ratings.response.tolist(), 64,
                                   ratings.input.tolist()), ratings.score.tolist())
    collate = R.RewardCollator(tok.pad_token_id)
    batch = collate([ds[i] for i in range(3)])
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), report_to="none", use_cpu=True)
    with torch.no_grad():
        rewards = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0].tolist()
        trainer = RewardTrainer(model=model, args=args, kind="ratings")
        got = trainer.compute_loss(model, batch).item()
    hand = np.mean([(1 / (1 + math.exp(-x)) - (s - 1) / 6) ** 2 for x, s in zip(rewards, ratings.score)])
    assert got == pytest.approx(hand, rel=1e-5)

    pairs, _ = R.prepare_rankings(_rankings()[:3])
    pds = R.PairsDataset(R.encode(tok, pairs.instruction.tolist(), pairs.preferred.tolist(), 64),
                         R.encode(tok, pairs.instruction.tolist(), pairs.other.tolist(), 64), pairs.tie.tolist())
    pbatch = collate([pds[i] for i in range(len(pds))])
    with torch.no_grad():
        rw = model(input_ids=pbatch["input_ids"], attention_mask=pbatch["attention_mask"]).logits[:, 0].tolist()
        trainer = RewardTrainer(model=model, args=args, kind="rankings", margin=0.5)
        got = trainer.compute_loss(model, pbatch).item()
    n = len(pds)
    hand = np.mean([-math.log(1 / (1 + math.exp(-(rw[i] - rw[n + i] - 0.5)))) for i in range(n)])
    assert got == pytest.approx(hand, rel=1e-5)

    # as TRL does, compute_loss records accuracy and margin of the non-tied pairs; log() averages them
    model.train()
    with torch.no_grad():
        torch.manual_seed(0)   # the same dropout masks in both passes
        trainer.compute_loss(model, pbatch)
        torch.manual_seed(0)
        rw_train = model(input_ids=pbatch["input_ids"], attention_mask=pbatch["attention_mask"]).logits[:, 0].tolist()
    strict = [i for i in range(n) if not pairs.tie.iloc[i]]
    d = [rw_train[i] - rw_train[n + i] for i in strict]
    assert trainer._metrics["train"]["accuracy"] == [pytest.approx(np.mean([x > 0 for x in d]))]
    assert trainer._metrics["train"]["margin"] == [pytest.approx(np.mean(d), rel=1e-4)]
    logged = []
    trainer.control = trainer.callback_handler.on_log(trainer.args, trainer.state, trainer.control, {})
    trainer.callback_handler.on_log = lambda args, state, control, logs: logged.append(logs) or control
    trainer.log({"loss": 1.0})
    assert logged[0]["accuracy"] == pytest.approx(np.mean([x > 0 for x in d]))
    assert logged[0]["margin"] == pytest.approx(np.mean(d), rel=1e-4) and not trainer._metrics["train"]
    model.eval()


def test_bradley_terry_excludes_ties_by_default():
    df = _rankings()
    kept, counts = R.prepare_rankings(df)
    assert counts["ties"] == 6 and counts["ties_excluded"] == 6 and len(kept) == 12
    assert not (kept["decision"] == "equal").any()
    # preferred is the chosen response
    b = kept[kept.decision == "b"].iloc[0]
    assert b.preferred == b.response2 and b.other == b.response1
    with_ties, counts = R.prepare_rankings(df, ties="include")
    assert len(with_ties) == 18 and with_ties.tie.sum() == 6 and counts["ties_excluded"] == 0


# ----------------------------------------------------------------------------- batching & truncation

def test_score_restores_order_and_dynamic_padding_matches_full_padding(llama_dir, bert_dir):
    df = _ratings()
    for backbone in (llama_dir, bert_dir):
        tok = R.load_tokenizer(backbone)
        rm = R.RewardModel(R.load_backbone(backbone, tok).eval(), tok, {"kind": "ratings", "max_length": 96})
        got = R.score(rm, df.instruction.tolist(), df.response.tolist(), batch_size=4, inputs=df.input.tolist())
        ids = R.encode(tok, df.instruction.tolist(), df.response.tolist(), 96, df.input.tolist())
        assert len({len(x) for x in ids}) > 3  # the lengths really differ
        with torch.no_grad():  # the original recipe: one by one, padded to max_length
            ref = [rm.model(**R.pad_batch([x], tok.pad_token_id, length=96)).logits[0, 0].item() for x in ids]
        np.testing.assert_allclose(got, ref, atol=1e-4)
        # reversing the input reverses the output
        back = R.score(rm, df.instruction.tolist()[::-1], df.response.tolist()[::-1], 5, df.input.tolist()[::-1])
        np.testing.assert_allclose(back[::-1], got, atol=1e-5)


def test_truncation_keeps_the_response(bert_dir):
    tok = R.load_tokenizer(bert_dir)
    long_input = "lorem ipsum " * 300
    response = "zebra giraffe elephant"
    (ids,) = R.encode(tok, ["Summarise the text."], [response], 128, inputs=[long_input])
    assert len(ids) == 128 and ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    text = tok.decode(ids)
    assert "zebra giraffe elephant" in text and "summarise" in text and "response" in text
    # a long response gets at least half the budget, and keeps its beginning
    (ids,) = R.encode(tok, ["Summarise the text."], ["zebra " + "cat " * 400], 128, inputs=[long_input])
    text = tok.decode(ids)
    assert len(ids) == 128 and text.count(" cat") >= 60 and "zebra" in text and "summarise" in text
    # short texts are untouched
    (ids,) = R.encode(tok, ["Say hi."], ["hi"], 64)
    assert tok.decode(ids, skip_special_tokens=True).endswith("hi")


def test_split_by_instruction_never_splits_an_instruction():
    df = _ratings(n_instr=10)
    train, val = R.split_by_instruction(df, val_fraction=0.3, seed=1)
    assert len(train) + len(val) == len(df)
    assert set(train.instruction_id).isdisjoint(val.instruction_id)
    assert val.instruction_id.nunique() == 3
    # a shared split for two tables
    ids = R.validation_instructions(df.instruction_id, 0.3, seed=1)
    _, val2 = R.split_by_instruction(df, val_ids=ids)
    assert set(val2.instruction_id) == set(val.instruction_id)
    # frames without instruction_id are grouped by instruction + input
    _, val3 = R.split_by_instruction(df.drop(columns="instruction_id"), val_fraction=0.3, seed=1)
    assert sorted(val3.instruction) == sorted(val.instruction)


def test_instruction_ids_use_the_column_or_hash_the_text():
    df = pd.DataFrame({"instruction": ["Add.", "Add.", "Sort."], "input": ["1 2", "3 4", None],
                       "instruction_id": ["x", "y", "z"]}, index=[5, 6, 7])
    assert R.instruction_ids(df).tolist() == ["x", "y", "z"]
    hashed = R.instruction_ids(df.drop(columns="instruction_id"))
    assert hashed.index.tolist() == [5, 6, 7]
    assert hashed.tolist() == [make_id("Add.", "1 2"), make_id("Add.", "3 4"), make_id("Sort.", "")]
    assert hashed.iloc[0] != hashed.iloc[1]  # the input is part of the id
    no_input = R.instruction_ids(df[["instruction"]])
    assert no_input.iloc[0] == no_input.iloc[1] == make_id("Add.")
    # the ids split_by_instruction splits by
    ids = set(R.validation_instructions(hashed, 0.5, seed=0))
    _, val = R.split_by_instruction(df.drop(columns="instruction_id"), val_ids=ids)
    assert set(R.instruction_ids(val)) == ids


# ----------------------------------------------------------------------------- save / reload / resume

def test_lora_reward_model_reloads_with_identical_scores(llama_dir, tmp_path):
    df = _ratings()
    res = R.train_ratings_rm(df, tmp_path / "rm", backbone=llama_dir, lora=True, lora_r=4, max_steps=3, learning_rate=1e-2,
                             gradient_checkpointing=True, **FAST)  # the 7B recipe (LoRA + checkpointing), tiny
    from peft import PeftModel

    assert isinstance(res.rm.model, PeftModel)
    head = res.rm.model.base_model.model.score.modules_to_save["default"].weight.detach().clone()
    before = R.score(res.rm, df.instruction.tolist(), df.response.tolist(), 8, df.input.tolist())
    meta = json.loads((tmp_path / "rm" / R.META_NAME).read_text())
    assert meta["kind"] == "ratings" and meta["prompt_format"] == PROMPT_FORMAT and meta["lora"] is True
    assert meta["packing"] == "packed"  # a decoder trains on packed rows
    assert (tmp_path / "rm" / "adapter_model.safetensors").exists()
    loaded = R.RewardModel.load(tmp_path / "rm", device="cpu")
    after = R.score(loaded, df.instruction.tolist(), df.response.tolist(), 8, df.input.tolist())
    np.testing.assert_allclose(after, before, atol=1e-5)
    torch.testing.assert_close(loaded.model.base_model.model.score.modules_to_save["default"].weight, head)
    # the trained score head differs from a fresh random one, so it really was saved and reloaded
    fresh = R.load_backbone(llama_dir, loaded.tokenizer)
    assert not torch.allclose(fresh.score.weight, head)
    with pytest.raises(R.RewardModelError, match="not a rankings"):
        R.RewardModel.load(tmp_path / "rm", kind="rankings")


def test_resume_from_checkpoint_continues_the_run(bert_dir, tmp_path):
    df = _ratings()
    settings = dict(FAST, backbone=bert_dir, epochs=2, save_checkpoints=True, save_total_limit=None, learning_rate=1e-3)
    full = R.train_ratings_rm(df, tmp_path / "full", **settings)
    steps = full.trainer.state.global_step
    ckpts = sorted((tmp_path / "full" / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(ckpts) == 2  # one per epoch
    # mark the first logged loss in the checkpoint: a resumed run carries it, a run from scratch would not
    state_file = ckpts[0] / "trainer_state.json"
    state = json.loads(state_file.read_text())
    first = next(h for h in state["log_history"] if "loss" in h)
    first["loss"] = 123.0
    state_file.write_text(json.dumps(state))
    resumed = R.train_ratings_rm(df, tmp_path / "resumed", resume_from_checkpoint=str(ckpts[0]), **settings)
    assert resumed.trainer.state.global_step == steps
    # the resumed run picked up the first epoch's history and reproduced the uninterrupted second epoch
    losses = lambda h: [(x["step"], x["loss"]) for x in h if "loss" in x]  # noqa: E731
    assert len(losses(resumed.log_history)) == len(losses(full.log_history)) == steps
    assert losses(resumed.log_history)[0][1] == 123.0
    np.testing.assert_allclose([v for _, v in losses(resumed.log_history)][1:],
                               [v for _, v in losses(full.log_history)][1:], rtol=1e-4)
    a = R.score(full.rm, df.instruction.tolist(), df.response.tolist(), 8, df.input.tolist())
    b = R.score(resumed.rm, df.instruction.tolist(), df.response.tolist(), 8, df.input.tolist())
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_rankings_rm_trains_and_evaluates_with_cli(bert_dir, tmp_path, capsys):
    from sflib import cli

    data = tmp_path / "rankings.jsonl"
    _rankings(8).to_json(data, orient="records", lines=True)
    out = tmp_path / "rm"
    rc = cli.main(["train-rm", "--kind", "rankings", "--data", str(data), "--output", str(out), "--backbone", bert_dir,
                   "--max-steps", "2", "--batch-size", "4", "--max-length", "64", "--no-checkpoints",
                   "--val-fraction", "0.25", "--margin", "0.1"])
    assert rc == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index('{\n  "output"'):])
    assert summary["held_out"]["n_pairs"] > 0 and 0.0 <= summary["held_out"]["pairwise_accuracy"] <= 1.0
    meta = json.loads((out / R.META_NAME).read_text())
    assert meta["kind"] == "rankings" and meta["counts"]["train"]["ties_excluded"] == 6
    assert meta["packing"] == "padded"  # an encoder keeps padded batches
    assert not (out / "checkpoints").exists()  # --no-checkpoints: no empty checkpoints/ folder either
    rm = R.RewardModel.load(out)
    table = R.evaluate({"rankings": rm}, ratings=_ratings(), rankings=_rankings(8))
    assert table.loc["rankings", "n_pairs"] == 16 and np.isnan(table.loc["rankings", "mse"])
    assert 0.0 <= table.loc["rankings", "pairwise_accuracy"] <= 1.0
    responses = tmp_path / "responses.jsonl"
    _ratings()[["instruction", "input", "response"]].to_json(responses, orient="records", lines=True)
    assert cli.main(["score", "--rm", str(out), "--data", str(responses), "--output", str(tmp_path / "s.jsonl")]) == 0
    scored = pd.read_json(tmp_path / "s.jsonl", lines=True)
    expected = R.score(rm, scored.instruction.tolist(), scored.response.tolist(), 32, scored.input.tolist())
    np.testing.assert_allclose(scored.reward, expected, atol=1e-5)


# ----------------------------------------------------------------------------- bad input

def test_bad_input_fails_before_training(bert_dir, tmp_path):
    from transformers import AutoTokenizer, CLIPVisionConfig

    rankings = _rankings()
    with pytest.raises(R.RewardModelError, match="no rankings training examples left.*6 ties excluded"):
        R.train_rankings_rm(rankings[rankings.decision == "equal"], tmp_path / "a", backbone=bert_dir, **FAST)
    bad = _ratings()
    bad["score"] = bad["score"].astype(object)
    bad.loc[4, "score"] = 8
    with pytest.raises(DataError, match="row 5.*score.*outside the 1-7"):
        R.train_ratings_rm(bad, tmp_path / "b", backbone=bert_dir, **FAST)
    bad.loc[4, "score"] = 3.5
    with pytest.raises(DataError, match="row 5"):
        R.train_ratings_rm(bad, tmp_path / "b", backbone=bert_dir, **FAST)
    bad.loc[4, "score"] = None  # an invalid judge reply is dropped and counted, not an error
    assert R.prepare_ratings(bad)[1] == {"rows": 18, "without_score": 1, "used": 17}
    bad_rank = rankings.copy()
    bad_rank.loc[2, "decision"] = "(c)"
    with pytest.raises(DataError, match="row 3.*decision"):
        R.train_rankings_rm(bad_rank, tmp_path / "c", backbone=bert_dir, **FAST)

    # a backbone without a sequence-classification head
    nohead = tmp_path / "vision"
    CLIPVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(nohead)
    AutoTokenizer.from_pretrained(bert_dir).save_pretrained(nohead)
    with pytest.raises(R.RewardModelError, match="no sequence-classification head"):
        R.train_ratings_rm(_ratings(), tmp_path / "d", backbone=str(nohead), **FAST)

    # a tokenizer without a pad token (and no eos token to fall back on)
    nopad = tmp_path / "nopad"
    tok = AutoTokenizer.from_pretrained(bert_dir)
    tok.pad_token = None
    tok.save_pretrained(nopad)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(bert_dir, f), nopad / f)
    with pytest.raises(R.RewardModelError, match="no pad token and no eos token"):
        R.train_ratings_rm(_ratings(), tmp_path / "e", backbone=str(nopad), **FAST)
    for name in "abcde":
        assert not (tmp_path / name / "checkpoints").exists()


def test_smollm2_loads_as_sequence_classifier_with_pad_token(tmp_path):
    path = models.smollm2_path()
    tok = R.load_tokenizer(str(path))
    model = R.load_backbone(str(path), tok)
    assert model.config.num_labels == 1 and model.score.out_features == 1
    assert tok.pad_token_id is not None and model.config.pad_token_id == tok.pad_token_id
    ids = R.encode(tok, ["Say hi.", "Count to three."], ["hi", "one two three"], 64)
    with torch.no_grad():
        out = model(**R.pad_batch(ids, tok.pad_token_id)).logits
    assert out.shape == (2, 1) and torch.isfinite(out).all()
    # a tokenizer saved without a pad token gets its eos token as pad
    from transformers import AutoTokenizer

    raw = AutoTokenizer.from_pretrained(path)
    raw.pad_token = None
    raw.save_pretrained(tmp_path / "tok")
    fixed = R.load_tokenizer(str(tmp_path / "tok"))
    assert fixed.pad_token == fixed.eos_token is not None


def test_accelerate_configs_load():
    """The multi-GPU recipes in docs/reward_models.md point at configs accelerate can read."""
    from pathlib import Path

    from accelerate.commands.config.config_args import ClusterConfig

    folder = Path(R.__file__).resolve().parents[1] / "configs" / "accelerate"
    fsdp = ClusterConfig.from_yaml_file(folder / "fsdp.yaml")
    assert str(fsdp.distributed_type).endswith("FSDP") and fsdp.mixed_precision == "bf16"
    assert fsdp.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    zero3 = ClusterConfig.from_yaml_file(folder / "deepspeed_zero3.yaml")
    assert str(zero3.distributed_type).endswith("DEEPSPEED") and zero3.deepspeed_config["zero_stage"] == 3
