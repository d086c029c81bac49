"""Packed batches (several sequences per row, positions restarting at 0, attention kept within each
sequence) give the same rewards and the same losses as padded batches, for both objectives, on a
tiny random-initialised Llama-shaped model with the bundled SmolLM2 tokenizer."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json

import numpy as np
import pandas as pd
import pytest
import torch

from sflib.rm.trainer import RewardTrainer
from sflib.generation import models
from sflib import rm as R

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A 2-layer, 64-wide Llama sequence classifier (random init, fp32) saved with the SmolLM2 tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    path = tmp_path_factory.mktemp("tiny_llama_packing")
    tok = AutoTokenizer.from_pretrained(models.smollm2_path())
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, num_labels=1,
                      pad_token_id=tok.pad_token_id or tok.eos_token_id)
    model = LlamaForSequenceClassification(cfg)
    with torch.no_grad():
        model.score.weight.normal_(0, 1.0)  # rewards far enough from 0 that a wrong token would show
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _texts(n=11):
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat while dogs ran far away into bright green fields of grass".split()
    instr = [f"Task {i}: " + " ".join(rng.choice(words, size=3 + i % 4)) for i in range(n)]
    resp = [" ".join(rng.choice(words, size=int(rng.integers(1, 40)))) for _ in range(n)]
    return instr, resp


def _rm(path):
    tok = R.load_tokenizer(path)
    model = R.load_backbone(path, tok, attention="sdpa").eval()
    return R.RewardModel(model, tok, {"kind": "ratings", "max_length": 64})


def test_pack_rows_layout():
    seqs = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10]]
    b = R.pack_rows(seqs, pad_id=0, row_tokens=5)
    ids, pos, last = b["input_ids"], b["position_ids"], b["last_index"]
    width = ids.shape[1]
    assert width == 5 and ids.shape[0] == 2  # 4+1 and 3+2: first fit, longest first
    flat_ids, flat_pos = ids.reshape(-1), pos.reshape(-1)
    for s, li in zip(seqs, last.tolist()):
        assert flat_ids[li].item() == s[-1]  # the last token of each sequence, in the order given
        assert flat_pos[li].item() == len(s) - 1
        assert flat_ids[li - len(s) + 1: li + 1].tolist() == s
    assert int((ids != 0).sum()) == sum(map(len, seqs))  # no padding: the rows are full
    one = R.pack_rows(seqs, pad_id=0)  # no row limit: a single row
    assert one["input_ids"].shape == (1, 10)
    with pytest.raises(ValueError):
        R.pack_rows([[1], []], pad_id=0)


def test_token_batches_respect_budget():
    lengths = [5, 30, 12, 7, 30, 1, 19]
    batches = R.token_batches(lengths, 40)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 40 for b in batches)
    assert [lengths[i] for i in batches[0]] == [30]  # longest first
    padded = R.token_batches(lengths, 60, padded=True)
    assert all(len(b) * max(lengths[i] for i in b) <= 60 for b in padded)
    big = R.token_batches([100, 3], 50)  # a sequence over the budget gets a batch of its own
    assert big == [[0], [1]]
    counted = R.token_batches(lengths, None, max_items=3)  # no budget: fixed-size, length-sorted batches
    assert [len(b) for b in counted] == [3, 3, 1] and [lengths[i] for i in counted[0]] == [30, 30, 19]


def test_packed_scores_equal_padded(tiny_llama):
    rm = _rm(tiny_llama)
    assert R.packable(rm.model)
    instr, resp = _texts()
    # reference: one sequence at a time, no padding at all
    ids = R.encode(rm.tokenizer, instr, resp, rm.max_length)
    with torch.no_grad():
        single = np.array([rm.model(input_ids=torch.tensor([s])).logits[0, 0].item() for s in ids])
    padded = R.score(rm, instr, resp, batch_size=4, packing=False)
    packed = R.score(rm, instr, resp, max_tokens=120, packing=True)  # several sequences per row, several rows
    one_row = R.score(rm, instr, resp, max_tokens=10_000, packing=True)
    assert np.abs(padded - single).max() < 1e-4
    assert np.abs(packed - single).max() < 1e-4
    assert np.abs(one_row - single).max() < 1e-4
    assert np.std(single) > 1e-2  # the rewards differ, so a mix-up would show
    # attention crossing a boundary would change the rewards: check the test could fail
    b = R.pack_rows(ids[:3], rm.tokenizer.pad_token_id)
    b["position_ids"] = torch.arange(b["input_ids"].shape[1]).unsqueeze(0)  # one long sequence
    with torch.no_grad():
        leaky = R.packed_rewards(rm.model, b)
    assert not np.allclose(leaky.numpy(), single[:3], atol=1e-3)


def _losses(rm, kind, batch, packed):
    trainer_cls = RewardTrainer
    t = object.__new__(trainer_cls)  # compute_loss needs only kind and margin
    t.kind, t.margin = kind, 0.3
    col = R.RewardCollator(rm.tokenizer.pad_token_id, packed=packed, row_tokens=70 if packed else None)
    with torch.no_grad():
        return trainer_cls.compute_loss(t, rm.model, col(batch)).item()


@pytest.mark.parametrize("kind", ["ratings", "rankings"])
def test_packed_loss_equals_padded(tiny_llama, kind):
    rm = _rm(tiny_llama)
    instr, resp = _texts(8)
    ids = R.encode(rm.tokenizer, instr, resp, 64)
    if kind == "ratings":
        ds = R.RatingsDataset(ids, [1 + i % 7 for i in range(len(ids))])
    else:
        other = R.encode(rm.tokenizer, instr, resp[::-1], 64)
        ds = R.PairsDataset(ids, other, [i == 2 for i in range(len(ids))])
    items = [ds[i] for i in range(len(ds))]
    padded, packed = _losses(rm, kind, items, False), _losses(rm, kind, items, True)
    assert padded == pytest.approx(packed, abs=1e-4)
    assert padded > 0
    # gradients agree too (what training actually uses)
    grads = []
    for p in (False, True):
        rm.model.zero_grad()
        col = R.RewardCollator(rm.tokenizer.pad_token_id, packed=p, row_tokens=70 if p else None)
        t = object.__new__(RewardTrainer)
        t.kind, t.margin = kind, 0.3
        RewardTrainer.compute_loss(t, rm.model, col(items)).backward()
        grads.append(torch.cat([q.grad.reshape(-1) for q in rm.model.parameters() if q.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


@pytest.mark.parametrize("kind", ["ratings", "rankings"])
def test_training_packed_decoder_records_path(tiny_llama, tmp_path, kind):
    if kind == "ratings":
        df = pd.DataFrame({"instruction": [f"q{i}" for i in range(6)], "input": "",
                           "response": [f"answer {'x ' * i}" for i in range(6)], "score": [1, 3, 5, 7, 2, 6]})
    else:
        df = pd.DataFrame({"instruction": [f"q{i}" for i in range(6)], "input": "",
                           "response1": [f"good {'y ' * i}" for i in range(6)], "response2": ["bad"] * 6,
                           "decision": ["a", "b", "a", "equal", "a", "b"]})
    out = tmp_path / kind
    res = R.train_reward_model(kind, df, out, eval=df.iloc[:3], backbone=tiny_llama, epochs=1, tokens_per_batch=80,
                               max_length=32, progress=False, save_checkpoints=False, logging_steps=1, attention="sdpa")
    meta = json.loads((out / R.META_NAME).read_text())
    assert meta["packing"] == "packed" and meta["attention"] == "sdpa" and meta["tokens_per_batch"] == 80
    assert meta["train_batches_per_epoch"] >= 2  # the budget split the data
    assert not (out / "checkpoints").exists()  # --no-checkpoints leaves no empty folder
    history = R.loss_history(res.log_history)
    assert np.isfinite(history["loss"]).all() and set(history["split"]) == {"train", "eval"}
    again = R.RewardModel.load(out, device="cpu")
    a = R.score(again, ["q1"], ["answer x "], packing=False)
    b = R.score(again, ["q1"], ["answer x "], packing=True)
    assert abs(a[0] - b[0]) < 1e-4


def test_sequence_ending_in_the_pad_token_reads_its_last_token(tiny_llama):
    """With pad = eos, a sequence ending in eos is read at that eos in both paths (transformers' own
    pooling would read the token before it in a padded batch)."""
    rm = _rm(tiny_llama)
    pad = rm.tokenizer.pad_token_id
    instr, resp = _texts(4)
    ids = [s + [pad] for s in R.encode(rm.tokenizer, instr, resp, 60)]
    with torch.no_grad():
        single = torch.tensor([R.packed_rewards(rm.model, R.pack_rows([s], pad)).item() for s in ids])
        padded = R.padded_rewards(rm.model, R.pad_batch(ids, pad))
        packed = R.packed_rewards(rm.model, R.pack_rows(ids, pad, row_tokens=80))
        before_eos = R.packed_rewards(rm.model, R.pack_rows([s[:-1] for s in ids], pad))
    assert torch.allclose(padded, single, atol=1e-4) and torch.allclose(packed, single, atol=1e-4)
    assert not torch.allclose(before_eos, single, atol=1e-3)
