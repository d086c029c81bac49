"""Reward-model throughput on one device: scoring against the original recipe, training against TRL.

(a) **Scoring**: the vendored best-of-64 texts (``data/original/inference_model_outputs``:
    AlpacaEval instruction + the ratings-RM, rankings-RM and text-davinci-003 outputs) scored by
    the original recipe (input order, batches of 8, every sequence padded to 512) and by
    :func:`sflib.rm.score` (length-sorted, token-budget batches, packed rows, no padding,
    attention within each sequence only), same weights and dtype; the scores of both are also
    compared in fp32 on a subset (must agree within 1e-3).
(b) **Training**: :func:`sflib.rm.train_reward_model` ("rankings", Bradley–Terry, packed)
    against TRL's ``RewardTrainer`` (padded batches) — same model initialisation (one saved
    random-init checkpoint), same pairs (the best-of-64 outputs of an instruction, paired, with a
    seeded preference) already tokenised the same way, same pairs per step on average, same
    precision (bf16 autocast on GPU), same optimiser (fused AdamW on GPU), one epoch. Also
    sflib's ratings objective on the same texts, and (GPU) a LoRA + gradient-checkpointing run.

Model: a random-initialised Llama-shaped model of ~1.1 B parameters (hidden 2048, 16 layers,
MLP 8192, 32 heads / 8 KV heads) with the SmolLM2 tokenizer; ``--tiny``: 2 layers of 64 (a CPU
dry run of the whole script). MFU counts useful FLOPs only (real tokens; 2N + attention per token
forward, x3 for training) against the GPU's dense bf16 peak.

Usage: ``python bench/reward_model.py [--device auto|cpu|cuda] [--tiny]``; writes
``bench/results/reward_model_<cpu|cuda>.json`` (``--out`` to change) and prints it. TRL and
``datasets`` are benchmark-only dependencies (``--skip-trl`` without them).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from sflib.core import data, paths
from sflib import io as sfio
from sflib import rm as R

ORIGINAL_LENGTH, ORIGINAL_BATCH = 512, 8
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "L4": 121e12}
ASSETS = ROOT / ".gpu_assets" / "smollm2"


def best_of_64() -> pd.DataFrame:
    """One row per instruction: the ratings-RM, rankings-RM and davinci-003 outputs."""
    folder = paths.data_dir() / "original" / "inference_model_outputs"
    frames = {f: sfio.read_model_outputs(folder / f"{f}.json")[data.MODEL_OUTPUT_COLUMNS]
              .drop_duplicates("instruction").set_index("instruction")
              for f in ("ratings_alpaca", "rankings_alpaca", "davinci003")}
    df = pd.concat({k: v["output"] for k, v in frames.items()}, axis=1).dropna().reset_index()
    return df


def texts(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    cols = ["ratings_alpaca", "rankings_alpaca", "davinci003"]
    return [i for i in df["instruction"] for _ in cols], [o for _, r in df.iterrows() for o in r[cols]]


def pairs(df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Every two distinct outputs of an instruction, with a seeded preference (a or b)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _, r in df.iterrows():
        outs = [r["ratings_alpaca"], r["rankings_alpaca"], r["davinci003"]]
        for i in range(3):
            for j in range(i + 1, 3):
                if outs[i] != outs[j]:
                    rows.append({"instruction": r["instruction"], "input": "", "response1": outs[i],
                                 "response2": outs[j], "decision": "a" if rng.random() < 0.5 else "b"})
    return pd.DataFrame(rows)


def make_model_dir(tok, tiny: bool, folder: Path) -> Path:
    """A random-initialised Llama-shaped sequence classifier saved once, so every trainer starts from it."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    size = (dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
            if tiny else dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                              num_key_value_heads=8))
    cfg = LlamaConfig(vocab_size=len(tok), max_position_embeddings=2048, num_labels=1, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=False, **size)
    torch.manual_seed(0)
    LlamaForSequenceClassification(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def n_params(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "embed" not in n)


def flops_per_token(cfg, n: int, seq_len: float, training: bool) -> float:
    """Dense FLOPs per token (PaLM appendix B): 2N + attention forward, x3 for training."""
    fwd = 2 * n + 2 * cfg.num_hidden_layers * cfg.hidden_size * seq_len
    return 3 * fwd if training else fwd


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t


def score_original(rm, ids):
    """The original recipe: input order, batches of 8, every sequence padded to 512."""
    out = np.empty(len(ids))
    with torch.inference_mode():
        for s in range(0, len(ids), ORIGINAL_BATCH):
            b = R.pad_batch(ids[s:s + ORIGINAL_BATCH], rm.tokenizer.pad_token_id, length=ORIGINAL_LENGTH)
            on_device = {k: v.to(rm.device) for k, v in b.items()}
            out[s:s + ORIGINAL_BATCH] = R.padded_rewards(rm.model, on_device).float().cpu().numpy()
    return out


def bench_scoring(rm, instr, outs, device, max_tokens, peak):
    ids = R.encode(rm.tokenizer, instr, outs, ORIGINAL_LENGTH)
    real, n = sum(map(len, ids)), len(ids)
    score_original(rm, ids[:16])  # warm-up both paths
    R.score(rm, instr[:64], outs[:64], max_tokens=max_tokens, progress=False)
    base, t_base = timed(lambda: score_original(rm, R.encode(rm.tokenizer, instr, outs, ORIGINAL_LENGTH)), device)
    ours, t_ours = timed(lambda: R.score(rm, instr, outs, max_tokens=max_tokens, progress=False), device)
    cfg, N = rm.model.config, n_params(rm.model)
    res = {"responses": n, "real_tokens": real, "mean_tokens": real / n, "max_length": ORIGINAL_LENGTH,
           "max_tokens_per_batch": max_tokens, "packing": R.packable(rm.model),
           "attention": rm.model.config._attn_implementation}
    for name, t, extra in (("original", t_base, {"batch_size": ORIGINAL_BATCH, "padded_to": ORIGINAL_LENGTH}),
                           ("sflib", t_ours, {})):
        f = flops_per_token(cfg, N, real / n, training=False) * real / t
        res[name] = {"seconds": t, "responses_per_s": n / t, "real_tokens_per_s": real / t,
                     "useful_flops_per_s": f, "mfu": f / peak if peak else None, **extra}
    res["speedup"] = t_base / t_ours
    res["max_abs_score_diff_same_dtype"] = float(np.max(np.abs(base - ours)))
    return res


def fp32_equality(model_dir, tok, instr, outs, device, n=64):
    """Original recipe vs sflib's packed scoring, both in fp32 on the same weights (TF32 off: true fp32 matmuls)."""
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        model = R.load_backbone(str(model_dir), tok, attention="sdpa").to(device).eval()
        rm = R.RewardModel(model, tok, {"kind": "ratings", "max_length": ORIGINAL_LENGTH})
        a = score_original(rm, R.encode(tok, instr[:n], outs[:n], ORIGINAL_LENGTH))
        b = R.score(rm, instr[:n], outs[:n], max_tokens=4 * ORIGINAL_LENGTH, progress=False)
        del model, rm
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return {"compared": len(a), "max_abs_diff": float(np.max(np.abs(a - b))),
            "within_1e-3": bool(np.max(np.abs(a - b)) <= 1e-3)}


def train_metrics(seconds, n_pairs, real_tokens, mean_len, cfg, N, peak, steps, loss):
    f = flops_per_token(cfg, N, mean_len, training=True) * real_tokens / seconds
    return {"seconds": seconds, "steps": steps, "pairs_per_s": n_pairs / seconds, "real_tokens_per_s": real_tokens / seconds,
            "useful_flops_per_s": f, "mfu": f / peak if peak else None, "final_train_loss": loss}


def bench_ours(kind, frame, model_dir, out, args, tokens_per_batch, extra=None):
    settings = dict(backbone=str(model_dir), epochs=1, max_length=args.max_length, tokens_per_batch=tokens_per_batch,
                    learning_rate=1e-5, warmup_ratio=0.0, precision="bf16" if args.on_gpu else "fp32",
                    save_checkpoints=False, progress=False, logging_steps=10_000, attention=args.attention,
                    compile=args.compile)
    res = R.train_reward_model(kind, frame, out, **{**settings, **(extra or {})})
    hist = [h for h in res.log_history if "train_loss" in h]
    meta = res.rm.meta
    out_meta = {k: meta[k] for k in ("packing", "attention", "tokens_per_batch", "train_tokens_per_epoch",
                                      "train_batches_per_epoch")}
    return res, float(hist[-1]["train_runtime"]), (hist[-1]["train_loss"] if hist else None), out_meta


def bench_trl(pair_frame, model_dir, tok, out, args):
    """TRL's RewardTrainer on the same pairs, tokenised exactly as sflib does (pre-tokenised dataset)."""
    import datasets
    import trl
    from transformers import AutoModelForSequenceClassification

    prepared, _ = R.prepare_rankings(pair_frame)
    instr = prepared["instruction"].tolist()
    chosen = R.encode(tok, instr, prepared["preferred"].tolist(), args.max_length)
    rejected = R.encode(tok, instr, prepared["other"].tolist(), args.max_length)
    ds = datasets.Dataset.from_dict({"chosen_ids": chosen, "rejected_ids": rejected})
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=1, attn_implementation="sdpa")
    model.config.pad_token_id = tok.pad_token_id
    cfg = trl.RewardConfig(
        output_dir=str(out), per_device_train_batch_size=args.batch, num_train_epochs=1, learning_rate=1e-5,
        warmup_steps=0, lr_scheduler_type="linear", bf16=args.on_gpu, max_length=args.max_length,
        gradient_checkpointing=False, optim="adamw_torch_fused" if args.on_gpu else "adamw_torch",
        logging_steps=10_000, save_strategy="no", report_to="none", disable_tqdm=True, seed=0,
        use_cpu=not args.on_gpu, dataloader_num_workers=0, center_rewards_coefficient=None)
    trainer = trl.RewardTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok)
    out_ = trainer.train()
    return (float(out_.metrics["train_runtime"]), trainer.state.global_step, float(out_.training_loss),
            {"trl": trl.__version__, "datasets": datasets.__version__})


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--tiny", action="store_true", help="a 2-layer, 64-wide model and a few texts (a dry run)")
    p.add_argument("--n-instructions", type=int, default=None, help="instructions used (default: all 553; --tiny 12)")
    p.add_argument("--max-length", type=int, default=1024, help="training max length (scoring: 512, the original's)")
    p.add_argument("--batch", type=int, default=8, help="pairs per step for TRL; sflib gets the same mean tokens per step")
    p.add_argument("--score-tokens", type=int, default=None, help="scoring token budget (default: GPU 65536, CPU 4096)")
    p.add_argument("--attention", default="auto", help="sflib's attention: auto, sdpa, flex_attention, flash_attention_2")
    p.add_argument("--compile", action="store_true", help="torch.compile sflib's model")
    p.add_argument("--big-batch-tokens", type=int, default=None,
                   help="also train sflib with this many tokens per step "
                        "(default: GPU 16384, CPU none (--tiny: 4x the batch); 0: skip)")
    p.add_argument("--skip-trl", action="store_true")
    p.add_argument("--skip-lora", action="store_true")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: .gpu_assets/smollm2, else the bundled SmolLM2)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    args.on_gpu = device.type == "cuda"
    torch.set_num_threads(args.threads)
    if args.on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
    started = time.time()
    result = {"device": device.type, "torch": torch.__version__, "platform": platform.platform(),
              "python": platform.python_version(), "tiny": args.tiny}
    import transformers

    result["transformers"] = transformers.__version__
    peak = None
    if args.on_gpu:
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        result.update(gpu=name, peak_bf16_flops=peak)

    tok_path = args.tokenizer or (str(ASSETS) if (ASSETS / "tokenizer.json").exists() else "smollm2")
    tok = R.load_tokenizer(tok_path)
    frame = best_of_64()
    n_instr = args.n_instructions or (12 if args.tiny else len(frame))
    frame = frame.iloc[:n_instr]
    instr, outs = texts(frame)
    pair_frame = pairs(frame)
    work = Path(tempfile.mkdtemp(prefix="sflib_bench_rm_"))
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"reward_model_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():  # after every section, so a failure later keeps what was measured
        result["seconds_total"] = time.time() - started
        out.write_text(json.dumps(result, indent=2) + "\n")

    def guarded(name, fn, where):
        """Run one optional section; its failure is recorded under ``where[name]`` and the run goes on."""
        try:
            fn()
        except Exception as e:  # a benchmark section failing must not lose the others
            import traceback

            where[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
            print(f"[bench] {name} failed: {type(e).__name__}: {e}", file=sys.stderr)
        if args.on_gpu:
            torch.cuda.empty_cache()
        save()

    model_dir = make_model_dir(tok, args.tiny, work / "init")

    # (a) scoring, bf16 on GPU (fp32 on CPU), same weights for both recipes
    dtype = torch.bfloat16 if args.on_gpu else torch.float32
    model = R.load_backbone(str(model_dir), tok, attention=args.attention).to(device=device, dtype=dtype).eval()
    result["model"] = {"parameters": sum(p.numel() for p in model.parameters()), "non_embedding": n_params(model),
                       "config": {k: getattr(model.config, k) for k in ("hidden_size", "num_hidden_layers",
                                                                         "intermediate_size", "num_attention_heads",
                                                                         "num_key_value_heads")}}
    rm = R.RewardModel(model, tok, {"kind": "ratings", "max_length": ORIGINAL_LENGTH})
    score_tokens = args.score_tokens or (65536 if args.on_gpu else 4096)
    result["scoring"] = bench_scoring(rm, instr, outs, device, score_tokens, peak)
    cfg, N = model.config, n_params(model)
    del model, rm
    result["scoring"]["fp32"] = fp32_equality(model_dir, tok, instr, outs, device)
    if args.on_gpu:
        torch.cuda.empty_cache()
    save()

    # (b) training: sflib (rankings and ratings) vs TRL, one epoch, same init / data / pairs per step
    prepared, _ = R.prepare_rankings(pair_frame)
    enc = lambda col: R.encode(tok, prepared["instruction"].tolist(), prepared[col].tolist(), args.max_length)  # noqa: E731
    pair_tokens = sum(len(a) + len(b) for a, b in zip(enc("preferred"), enc("other")))
    n_pairs = len(prepared)
    mean_len = pair_tokens / (2 * n_pairs)
    budget = int(round(args.batch * pair_tokens / n_pairs))
    training = {"pairs": n_pairs, "real_tokens": pair_tokens, "mean_tokens": mean_len, "max_length": args.max_length,
                "pairs_per_step": args.batch, "sflib_tokens_per_batch": budget}
    _, secs, loss, meta = bench_ours("rankings", pair_frame, model_dir, work / "ours_rankings", args, budget)
    training["sflib"] = {**train_metrics(secs, n_pairs, pair_tokens, mean_len, cfg, N, peak, meta["train_batches_per_epoch"],
                                         loss), **meta}
    if args.on_gpu:
        training["sflib"]["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
        torch.cuda.empty_cache()
    result["training"] = training
    save()

    def trl_section():
        secs, steps, loss, versions = bench_trl(pair_frame, model_dir, tok, work / "trl", args)
        training["trl"] = {**train_metrics(secs, n_pairs, pair_tokens, mean_len, cfg, N, peak, steps, loss), **versions}
        training["speedup_vs_trl"] = training["trl"]["seconds"] / training["sflib"]["seconds"]

    if not args.skip_trl:
        guarded("trl", trl_section, training)

    big = (args.big_batch_tokens if args.big_batch_tokens is not None
           else 16384 if args.on_gpu else 4 * budget if args.tiny else 0)

    def big_section():  # the same epoch with a larger token budget: what packing reaches when the batch is free
        _, secs, loss, meta = bench_ours("rankings", pair_frame, model_dir, work / "ours_big", args, big)
        training["sflib_big_batch"] = {**train_metrics(secs, n_pairs, pair_tokens, mean_len, cfg, N, peak,
                                                       meta["train_batches_per_epoch"], loss), **meta}

    if big:
        guarded("sflib_big_batch", big_section, training)

    def ratings_section():
        ratings = pd.DataFrame({"instruction": instr, "input": "", "response": outs,
                                "score": np.random.default_rng(0).integers(1, 8, size=len(outs))})
        r_tokens = sum(map(len, R.encode(tok, instr, outs, args.max_length)))
        _, secs, loss, meta = bench_ours("ratings", ratings, model_dir, work / "ours_ratings", args,
                                         args.batch * 2 * int(round(r_tokens / len(outs))))
        r = {"responses": len(outs), "real_tokens": r_tokens, **meta,
             **train_metrics(secs, len(outs), r_tokens, r_tokens / len(outs), cfg, N, peak,
                             meta["train_batches_per_epoch"], loss)}
        r.pop("pairs_per_s")
        r["responses_per_s"] = len(outs) / secs
        result["training_ratings"] = r

    guarded("training_ratings", ratings_section, result)

    def lora_section():  # the 7B recipe (LoRA + gradient checkpointing) on the same model, a few steps
        if args.on_gpu:
            torch.cuda.reset_peak_memory_stats()
        sub = pair_frame.iloc[: max(8, len(pair_frame) // 8)]
        _, secs, loss, meta = bench_ours("rankings", sub, model_dir, work / "ours_lora", args, budget,
                                         extra={"lora": True, "gradient_checkpointing": True, "learning_rate": 2e-4})
        r = {"pairs": len(sub), "seconds": secs, "final_train_loss": loss, "pairs_per_s": len(sub) / secs, **meta}
        if args.on_gpu:
            r["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
        result["lora_gradient_checkpointing"] = r

    if not args.skip_lora:
        guarded("lora_gradient_checkpointing", lora_section, result)

    s, t = result["scoring"], result["training"]
    result["targets"] = {
        "scoring_mfu>=0.5": (s["sflib"]["mfu"] or 0) >= 0.5, "scoring_speedup>=3": s["speedup"] >= 3,
        "training_mfu>=0.4": (t["sflib"]["mfu"] or 0) >= 0.4,
        "training_speedup_vs_trl>=3": (t.get("speedup_vs_trl") or 0) >= 3,
        "scores_equal_fp32_within_1e-3": s["fp32"]["within_1e-3"],
    }
    result["seconds_total"] = time.time() - started
    result["notes"] = ("real_tokens_per_s counts unpadded tokens; MFU counts useful FLOPs only (2N + attention per token "
                       "forward, x3 for training) against the dense bf16 peak; training times are the Trainer's "
                       "train_runtime for both sflib and TRL (tokenisation excluded for both: TRL gets sflib's token ids); "
                       "sflib's token budget gives the same mean pairs per step as TRL's batch.")
    save()
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
