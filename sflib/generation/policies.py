"""Policies: the models that write responses (stage 01), by name, as their own kind of thing.

``get_policy("smollm2")`` (a config in ``./policies/`` or ``sflib/configs/policies/``), a YAML path,
``"local:<model>"`` / a local model folder (``transformers`` sampling via
:func:`sflib.generation.sampling_local.generate_local`) or ``"openai:<model>"`` (an OpenAI-compatible server such as
``vllm serve``, via :func:`sflib.generation.sampling_openai.generate_openai`). Keyword options override the config
(``get_policy("qwen2.5-7b-vllm", concurrency=32, temperature=0.7)``); see
:mod:`sflib.judges.config` for the keys.

``policy.generate(instructions, k=5, seed=0)`` returns the canonical responses table.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from ..judges.config import KEYS, apply_overrides, resolve

_ALIASES = {"max_new_tokens": "max_tokens", "prompt_style": "template"}


class Policy:
    """A policy resolved from its config. ``name`` is what it was asked for, ``config`` the full settings."""

    def __init__(self, config: dict, **options: Any):
        self.config = config
        self.name = config["name"]
        self.provider = config["provider"]
        self.model = config["model"]
        self.options = options  # passed on to generate_local / the OpenAI judge (e.g. base_url, api_key)
        if self.provider not in ("local", "openai"):
            raise ValueError(f"policy {self.name!r}: provider {self.provider!r} cannot write responses")
        if self.config["template"] not in ("chat", "alpaca"):
            raise ValueError(f"policy {self.name!r} ({config.get('source')}): template must be 'chat' or "
                             f"'alpaca', got {self.config['template']!r}")

    def __repr__(self) -> str:
        return f"Policy({self.name!r}, provider={self.provider!r}, model={self.model!r})"

    @property
    def prompt_style(self) -> str:
        return self.config["template"]

    def client(self):
        """The :class:`~sflib.judges.openai_judge.OpenAIJudge` that samples from the server (openai only)."""
        from ..judges import build_judge

        if self.provider != "openai":
            raise ValueError(f"policy {self.name!r} is local; it has no server client")
        return build_judge(self.config, **self.options)

    def generate(self, instructions: pd.DataFrame, k: int = 5, seed: int = 0, *, store=None,
                 generator: str | None = None, progress: bool = True) -> pd.DataFrame:
        """Sample ``k`` responses per instruction (see :func:`sflib.generation.sampling_local.generate_local` /
        :func:`sflib.generation.sampling_openai.generate_openai` for ``store`` and ``generator``)."""
        from . import sampling_local, sampling_openai

        c = self.config
        if self.provider == "local":
            return sampling_local.generate_local(instructions, model=c["model"], k=k, temperature=c["temperature"],
                                    top_p=c["top_p"] if c["top_p"] is not None else 1.0,
                                    max_new_tokens=c["max_tokens"], batch_size=c["batch_size"], seed=seed,
                                    prompt_style=self.prompt_style, generator=generator, store=store,
                                    device=c.get("device"), progress=progress, **self.options)
        return sampling_openai.generate_openai(instructions, self.client(), k=k, store=store, prompt_style=self.prompt_style,
                                 seed=seed, generator=generator, progress=progress,
                                 n_per_request=None if c.get("n_per_request", True) else False)


def get_policy(name_or_spec: "str | Policy", **overrides: Any) -> Policy:
    """A :class:`Policy` from a config name, a YAML path or a spec; ``overrides`` win over the config
    (config keys such as ``temperature``, ``max_tokens``, ``top_p``, ``concurrency``, ``base_url``;
    other keywords go to the sampler)."""
    if isinstance(name_or_spec, Policy):
        if overrides:
            raise TypeError(f"get_policy: options {sorted(overrides)} given with an existing policy")
        return name_or_spec
    cfg = resolve("policy", name_or_spec)
    overrides = {_ALIASES.get(k, k): v for k, v in overrides.items()}
    cfg = apply_overrides(cfg, {k: v for k, v in overrides.items() if k in KEYS})
    return Policy(cfg, **{k: v for k, v in overrides.items() if k not in KEYS and v is not None})
