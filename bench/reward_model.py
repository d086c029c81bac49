"""Reward-model throughput: sflib's batching against the original recipe.

The original scripts padded every sequence to 512 tokens and used batches of 8. sflib pads each
batch only to its longest sequence, sorts by length for scoring (batches of 32) and groups
training batches by length (still batches of 8, so the optimisation is unchanged).

Inputs follow the length distribution of the vendored best-of-64 outputs
(``data/original/inference_model_outputs/{ratings,rankings}_alpaca.json``: AlpacaEval instruction
+ chosen output, as the reward model reads them), truncated at 512 tokens for both recipes.

- ``--device cuda``: a random-initialised Llama-shaped model of ~1B parameters in bf16
  (hidden 2048, 16 layers, MLP 8192, 32 heads / 8 KV heads, SmolLM2 tokenizer); scores are also
  compared in fp32 on a subset; model FLOPs utilisation against the GPU's dense bf16 peak.
- ``--device cpu``: the bundled MiniLM (fp32), same comparison, on a subset sized for a shared CPU.

Usage: ``python bench/reward_model.py [--device auto|cpu|cuda]``; writes
``bench/results/reward_model_<cpu|cuda>.json`` and prints it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sflib import data, models, paths  # noqa: E402
from sflib import reward_model as R  # noqa: E402

ORIGINAL_LENGTH, ORIGINAL_BATCH = 512, 8
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "L4": 121e12}


def best_of_64_texts() -> tuple[list[str], list[str]]:
    folder = paths.data_dir() / "original" / "inference_model_outputs"
    frames = [data.read_model_outputs(folder / f) for f in ("ratings_alpaca.json", "rankings_alpaca.json")]
    instructions = [i for f in frames for i in f["instruction"]]
    outputs = [o for f in frames for o in f["output"]]
    return instructions, outputs


def llama_1b(tokenizer, dtype):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                      num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=2048, num_labels=1,
                      pad_token_id=tokenizer.pad_token_id, attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForSequenceClassification(cfg)
    return model.to(dtype)


def flops_per_token(model, seq_len: float, training: bool) -> float:
    """Dense FLOPs per token (PaLM appendix B): 2N forward (+ attention), x3 for training."""
    cfg = model.config
    n = sum(p.numel() for name, p in model.named_parameters() if "embed" not in name)
    attn = 2 * cfg.num_hidden_layers * cfg.hidden_size * seq_len  # QK^T and AV, forward
    fwd = 2 * n + attn
    return 3 * fwd if training else fwd


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def score_original(rm, ids, batch_size=ORIGINAL_BATCH, length=ORIGINAL_LENGTH):
    """The original recipe: input order, batches of 8, every sequence padded to 512."""
    out = np.empty(len(ids))
    with torch.inference_mode():
        for s in range(0, len(ids), batch_size):
            b = R.pad_batch(ids[s:s + batch_size], rm.tokenizer.pad_token_id, length=length)
            out[s:s + batch_size] = rm.model(**{k: v.to(rm.device) for k, v in b.items()}).logits[:, 0].float().cpu().numpy()
    return out


def timed(fn, device):
    sync(device)
    t = time.perf_counter()
    result = fn()
    sync(device)
    return result, time.perf_counter() - t


def bench_scoring(rm, instructions, outputs, device, batch_size):
    ids = R.encode(rm.tokenizer, instructions, outputs, ORIGINAL_LENGTH)
    real = sum(len(x) for x in ids)
    # warm-up both paths on a few sequences
    score_original(rm, ids[:8])
    R.score(rm, instructions[:8], outputs[:8], batch_size=batch_size, progress=False)

    def original():  # tokenisation included in both recipes
        return score_original(rm, R.encode(rm.tokenizer, instructions, outputs, ORIGINAL_LENGTH))

    base, t_base = timed(original, device)
    ours, t_ours = timed(lambda: R.score(rm, instructions, outputs, batch_size=batch_size, progress=False), device)
    n = len(ids)
    res = {
        "responses": n, "real_tokens": real, "mean_tokens": real / n,
        "original": {"seconds": t_base, "responses_per_s": n / t_base, "tokens_per_s": real / t_base,
                     "padded_tokens_per_s": n * ORIGINAL_LENGTH / t_base, "batch_size": ORIGINAL_BATCH},
        "sflib": {"seconds": t_ours, "responses_per_s": n / t_ours, "tokens_per_s": real / t_ours,
                  "batch_size": batch_size},
        "speedup": t_base / t_ours,
        "max_abs_score_diff_same_dtype": float(np.max(np.abs(base - ours))),
    }
    return res, base, ours


def train_steps(model, batches, device, lr=1e-5, opt=None):
    opt = opt or torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for b in batches:
        b = {k: v.to(device) for k, v in b.items()}
        labels = b.pop("labels")
        loss = R.ratings_loss(model(**b).logits[:, 0], labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    model.eval()


def bench_training(model, tokenizer, instructions, outputs, device, pool: int, seed=0):
    """One epoch over ``pool`` sequences, batches of 8: padded to 512 in random order vs length-grouped dynamic padding."""
    from transformers.trainer_pt_utils import get_length_grouped_indices

    rng = np.random.default_rng(seed)
    pick = rng.choice(len(outputs), size=pool, replace=False)
    ids = R.encode(tokenizer, [instructions[i] for i in pick], [outputs[i] for i in pick], ORIGINAL_LENGTH)
    scores = rng.integers(1, 8, size=pool).tolist()
    ds = R.RatingsDataset(ids, scores)
    collate = R.RewardCollator(tokenizer.pad_token_id, 8 if device.type == "cuda" else None)
    order = rng.permutation(pool).tolist()
    base_batches = []
    for s in range(0, pool, ORIGINAL_BATCH):
        feats = [ds[i] for i in order[s:s + ORIGINAL_BATCH]]
        b = R.pad_batch([f["input_ids"] for f in feats], tokenizer.pad_token_id, length=ORIGINAL_LENGTH)
        b["labels"] = torch.tensor([f["labels"] for f in feats])
        base_batches.append(b)
    g = torch.Generator().manual_seed(seed)
    grouped = get_length_grouped_indices(ds.lengths, ORIGINAL_BATCH, generator=g)
    our_batches = [collate([ds[i] for i in grouped[s:s + ORIGINAL_BATCH]]) for s in range(0, pool, ORIGINAL_BATCH)]
    real = sum(ds.lengths)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    train_steps(model, base_batches[:1], device, opt=opt)  # warm-up (also allocates optimizer state)
    # alternate the two recipes step by step so a shared machine's load drift hits both alike
    t_base = t_ours = 0.0
    for b, o in zip(base_batches, our_batches):
        t_base += timed(lambda: train_steps(model, [b], device, opt=opt), device)[1]
        t_ours += timed(lambda: train_steps(model, [o], device, opt=opt), device)[1]
    steps = len(base_batches)
    return {
        "sequences": pool, "steps": steps, "batch_size": ORIGINAL_BATCH, "real_tokens": real,
        "original": {"seconds": t_base, "steps_per_s": steps / t_base, "sequences_per_s": pool / t_base,
                     "tokens_per_s": real / t_base, "padded_tokens": steps and sum(b["input_ids"].numel() for b in base_batches)},
        "sflib": {"seconds": t_ours, "steps_per_s": steps / t_ours, "sequences_per_s": pool / t_ours,
                  "tokens_per_s": real / t_ours, "padded_tokens": sum(b["input_ids"].numel() for b in our_batches)},
        "speedup": t_base / t_ours,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--n-score", type=int, default=None, help="responses to score (default: all 1106 on GPU, 96 on CPU)")
    p.add_argument("--train-pool", type=int, default=None, help="sequences in the training epoch (GPU 256, CPU 48)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    torch.set_num_threads(args.threads)
    instructions, outputs = best_of_64_texts()
    rng = np.random.default_rng(0)
    on_gpu = device.type == "cuda"
    n_score = args.n_score or (len(outputs) if on_gpu else 96)
    pick = rng.choice(len(outputs), size=min(n_score, len(outputs)), replace=False)
    instr, outs = [instructions[i] for i in pick], [outputs[i] for i in pick]
    result = {"device": device.type, "torch": torch.__version__, "platform": platform.platform(),
              "load_average_before": os.getloadavg()}
    started = time.time()

    if on_gpu:
        tok = R.load_tokenizer("smollm2")
        model = llama_1b(tok, torch.bfloat16).eval()
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        result.update(model="random-init Llama-shaped ~1B (bf16)", gpu=name, peak_bf16_flops=peak)
        score_batch = 32
    else:
        tok = R.load_tokenizer("minilm")
        model = R.load_backbone("minilm", tok).eval()
        peak = None
        result.update(model="all-MiniLM-L6-v2 (fp32)", threads=args.threads)
        score_batch = 32
    result["parameters"] = sum(p.numel() for p in model.parameters())
    rm = R.RewardModel(model, tok, {"kind": "ratings", "max_length": ORIGINAL_LENGTH})
    scoring, _, _ = bench_scoring(rm, instr, outs, device, score_batch)
    mean_len = scoring["mean_tokens"]
    for k in ("original", "sflib"):
        f = flops_per_token(model, mean_len, training=False) * scoring[k]["tokens_per_s"]
        scoring[k]["useful_flops_per_s"] = f
        scoring[k]["mfu"] = f / peak if peak else None
    result["scoring"] = scoring

    # scores equal in fp32 (GPU: an fp32 copy of the same weights on a subset)
    if on_gpu:
        model32 = llama_1b(tok, torch.float32)
        model32.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
        rm32 = R.RewardModel(model32.eval(), tok, rm.meta)
        sub = slice(0, 64)
        ids = R.encode(tok, instr[sub], outs[sub], ORIGINAL_LENGTH)
        a = score_original(rm32, ids)
        b = R.score(rm32, instr[sub], outs[sub], batch_size=score_batch, progress=False)
        result["fp32_max_abs_score_diff"] = float(np.max(np.abs(a - b)))
        result["fp32_compared"] = len(ids)
        del model32, rm32
        torch.cuda.empty_cache()
    else:
        result["fp32_max_abs_score_diff"] = scoring["max_abs_score_diff_same_dtype"]
        result["fp32_compared"] = scoring["responses"]
    result["scores_equal_within_1e-3"] = result["fp32_max_abs_score_diff"] <= 1e-3

    pool = args.train_pool or (256 if on_gpu else 48)
    training = bench_training(model, tok, instructions, outputs, device, pool)
    for k in ("original", "sflib"):
        f = flops_per_token(model, training["real_tokens"] / pool, training=True) * training[k]["tokens_per_s"]
        training[k]["useful_flops_per_s"] = f
        training[k]["mfu"] = f / peak if peak else None
    result["training"] = training
    result["targets"] = {"scoring_speedup>=3": scoring["speedup"] >= 3, "training_speedup>=2": training["speedup"] >= 2}
    result["seconds_total"] = time.time() - started
    result["load_average_after"] = os.getloadavg()
    result["notes"] = ("tokens_per_s counts real (unpadded) tokens; MFU counts useful FLOPs only (2N+attention per "
                       "token forward, x3 for training) against the dense bf16 peak; training = AdamW steps on the "
                       "ratings loss, batches of 8 in both recipes, steps of the two recipes alternated; the original recipe's 8-bit weights are not "
                       "reproduced (both recipes use the same dtype).")
    out = Path(args.out) if args.out else Path(__file__).resolve().parent / "results" / f"reward_model_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
