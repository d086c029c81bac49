"""``python -m sflib generate``: sample k responses per instruction from a policy.

Reads the instructions (any layout :func:`sflib.io.read_instructions` reads), samples with the
policy (:mod:`sflib.generation.policies`: a local model or an OpenAI-compatible server) and writes
the responses table and, with ``--generations-json``, the original generation layout. Exit status as
every stage command (:mod:`sflib.io.outputs`): when sampling requests failed, the samples that
were drawn go to ``<out>.partial.jsonl`` with one line on what failed and why (status 3); the
next run samples only what is missing (the samples are stored); ``--allow-partial`` accepts them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..io.outputs import Incomplete, finish, partial_path, remove_stale_partial
from .generate import PROMPT_STYLES, pick_instructions, write_responses


def add_cli(subparsers) -> None:
    from .. import io
    from ..judges.config import add_judge_options

    p = subparsers.add_parser(
        "generate", help="sample k responses per instruction (local transformers model or OpenAI-compatible server)",
        description="Sample k responses per instruction and write them as a canonical responses table "
                    "(.jsonl/.parquet) and in the original generation JSON layout. Sampling settings default "
                    "to the policy's config (sflib/configs/policies/ or ./policies/); the options below override it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    io.add_input_options(p, flag="--instructions", help="instructions")
    p.add_argument("--out", "--output", dest="out", required=True, help="responses table to write (.jsonl or .parquet)")
    p.add_argument("--generations-json", help="also write the original layout [{instruction, input, responses}]")
    p.add_argument("--n-instructions", type=int, help="a random sample of this many instructions (default: all)")
    p.add_argument("-k", "--k", dest="k", type=int, default=5, help="responses per instruction")
    p.add_argument("--policy", help="policy: a config name (smollm2, qwen2.5-7b-vllm, ./policies/NAME.yaml), a .yaml "
                                    "path, 'openai:<model>' (a server) or a local model folder (default: smollm2)")
    p.add_argument("--model", help="local model: 'smollm2' or a Hugging Face causal-LM folder (same as --policy)")
    p.add_argument("--openai-model", help="sample from an OpenAI-compatible server with this model name "
                                          "(same as --policy openai:MODEL)")
    p.add_argument("--base-url", help="server URL, e.g. http://localhost:8000/v1 for `vllm serve` (default: the "
                                      "policy's, else OpenAI)")
    add_judge_options(p, sampling=True)
    p.add_argument("--batch-size", type=int, help="sequences per forward pass (local only)")
    p.add_argument("--device", help="local model device, e.g. cuda or cpu (default: the GPU when there is one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompt-style", choices=PROMPT_STYLES, help="the model's chat template, or the Alpaca prompt "
                                                                 "(default: the policy's, else chat)")
    p.add_argument("--generator", help="generator name recorded with each response")
    p.add_argument("--store", help="local: JSONL of finished samples; server: annotation store (.sqlite)")
    p.add_argument("--allow-partial", action="store_true",
                   help="accept a run where some samples failed (exit 0, written to --out)")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    from .. import io
    from ..judges.config import judge_overrides
    from .policies import get_policy

    # the instructions first: a bad file is refused before a policy (or its model) is set up
    instructions = io.read_input(args, "instructions", flag="--instructions")
    given = [o for o, v in (("--policy", args.policy), ("--model", args.model), ("--openai-model", args.openai_model))
             if v]
    if len(given) > 1:
        raise ValueError(f"give one of --policy, --model, --openai-model (got {', '.join(given)})")
    spec = args.policy or args.model or (f"openai:{args.openai_model}" if args.openai_model else "smollm2")
    overrides = dict(judge_overrides(args), base_url=args.base_url, batch_size=args.batch_size,
                     device=args.device, template=args.prompt_style)
    policy = get_policy(spec, **{k: v for k, v in overrides.items() if v is not None})
    instructions = pick_instructions(instructions, args.n_instructions, seed=args.seed)
    problem = None
    try:
        df = policy.generate(instructions, k=args.k, seed=args.seed, store=args.store, generator=args.generator)
    except Incomplete as e:  # some requests failed: keep what was sampled, beside the output
        if e.result is None:
            raise
        df, problem = e.result, str(e)
    generations = args.generations_json
    if problem and not args.allow_partial and generations:
        generations = partial_path(generations)

    def write(path: Path) -> str:
        paths = write_responses(df, path, generations)
        if not problem and args.generations_json:
            remove_stale_partial(args.generations_json)
        return "" if len(paths) == 1 else f" and {paths[1]}"

    code = finish(args.out, write, problem, allow_partial=args.allow_partial,
                  retry_hint="Run the same command again to sample only what failed (the samples are stored)")
    print(f"{len(df)} responses for {df['instruction_id'].nunique() if len(df) else 0} instructions from "
          f"{policy.name}")
    return code
