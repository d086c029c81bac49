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


def test_a_checkpoint_cut_off_mid_save_is_neither_named_nor_resumed_from(tmp_path):
    """Ctrl-C can land while the Trainer writes a checkpoint: the folder exists but has no trainer_state.json
    (seen in CI). It is not named as the last checkpoint, ``--resume latest`` takes the one before it, and a
    folder named explicitly is refused with what to do."""
    import argparse

    import pytest

    from sflib.cli import interrupted_line
    from sflib.rm.training import RewardModelError, _resume_point, complete_checkpoints

    checkpoints = tmp_path / "rm" / "checkpoints"
    for step in (20, 40):
        (checkpoints / f"checkpoint-{step}").mkdir(parents=True)
        (checkpoints / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    cut = checkpoints / "checkpoint-60"
    cut.mkdir()
    (cut / "model.safetensors").write_bytes(b"half")
    assert [p.name for p in complete_checkpoints(checkpoints)] == ["checkpoint-20", "checkpoint-40"]
    line = interrupted_line(argparse.Namespace(command="train-rm", output=str(tmp_path / "rm")), {})
    assert "the last checkpoint is step 40 (" in line, line
    with pytest.raises(RewardModelError, match="not a complete checkpoint"):
        _resume_point(str(cut), checkpoints)
    assert _resume_point(True, checkpoints) == str(checkpoints / "checkpoint-40")
    assert not cut.exists()  # deleted, so the Trainer's rotation and a later save do not trip on it
    assert _resume_point(None, checkpoints) is None
    for step in (20, 40):
        (checkpoints / f"checkpoint-{step}" / "trainer_state.json").unlink()
    with pytest.raises(RewardModelError, match="no complete checkpoint"):
        _resume_point(True, checkpoints)
