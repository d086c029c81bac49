"""Ctrl-C during ``train-rm`` follows the exit contract (issue 21): exit 130, one line and no traceback, and
the checkpoint written before it lets ``--resume latest`` go on from where training stopped."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_accelerate_ddp import DATA, ROOT, tiny_backbone


def _checkpoints(output: Path) -> list[Path]:
    return sorted((output / "checkpoints").glob("checkpoint-*/trainer_state.json"),
                  key=lambda p: int(p.parent.name.split("-")[1]))


def test_sigint_during_train_rm_is_130_and_resume_goes_on(tmp_path):
    backbone = tiny_backbone(tmp_path / "backbone")
    out = tmp_path / "rm"
    common = [sys.executable, "-m", "sflib", "train-rm", "--kind", "rankings", "--data", str(DATA), "--backbone",
              str(backbone), "--val-fraction", "0", "--batch-size", "4", "--max-length", "64", "--output", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*common, "--epochs", "500"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    start = time.monotonic()
    while not _checkpoints(out) and proc.poll() is None and time.monotonic() - start < 300:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    time.sleep(0.5)  # mid-epoch, after the first checkpoint
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in stdout + err and "KeyboardInterrupt" not in stdout + err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: ") and last.endswith("re-run with --resume latest to go on from the last "
                                                              "checkpoint"), err[-2000:]
    assert not (out / "config.json").exists()  # no half-trained model was saved as if finished

    step = json.loads(_checkpoints(out)[-1].read_text())["global_step"]
    assert step >= 20  # at least one epoch (80 untied pairs / 4)
    assert f"the last checkpoint is step {step} (" in last  # says where training will go on from
    done = subprocess.run([*common, "--epochs", "500", "--max-steps", str(step + 5), "--resume", "latest"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    final = json.loads(_checkpoints(out)[-1].read_text())
    assert final["global_step"] == step + 5  # went on from the checkpoint: 5 more steps, not from 0
