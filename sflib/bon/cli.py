"""``python -m sflib best-of-n``: rerank n samples per instruction with reward model(s), write AlpacaEval outputs.

For each ``--rm``: score every sample (:func:`sflib.bon.score_samples`), keep the best of n per
instruction (:func:`sflib.bon.select_best`), write ``<name>_outputs.json`` (AlpacaEval's
``model_outputs``), ``<name>_scored.jsonl`` and the best-of-m curve ``<name>_best_of_m.jsonl``.
Exit status as every stage command (:mod:`sflib.io.outputs`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from .. import io as sfio
from ..core.data import write_model_outputs
from . import best_of_m_curve, check_samples, load_reward_model, score_samples, select_best, to_model_outputs


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "best-of-n", help="rerank n samples per instruction with reward model(s); write AlpacaEval outputs",
        description="Score every sample with each reward model, keep the best of n per instruction, write it "
                    "in AlpacaEval's model_outputs layout, and write the best-of-m curve (m = 1, 2, 4, ..., n) "
                    "computed from the same samples.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sfio.add_input_options(p, flag="--responses",
                           help="sampled responses: a canonical table (.jsonl/.parquet) or the generation JSON layout")
    p.add_argument("--rm", action="append", required=True, metavar="NAME=FOLDER",
                   help="a reward model folder, optionally named (repeatable), e.g. ratings_rm=outputs/reward_models/ratings")
    p.add_argument("--n", type=int, help="samples per instruction to select from (default: all)")
    p.add_argument("--allow-fewer", action="store_true",
                   help="let instructions with fewer than n samples select among those they have (warns)")
    p.add_argument("--out-dir", default=None, help="folder for <name>_outputs.json etc. (default: outputs/best_of_n)")
    p.add_argument("--generator", default=None, help="generator name in the outputs (default: <policy>_best_of_<n>_<name>)")
    p.add_argument("--seed", type=int, default=0, help="seed of the best-of-m subsets")
    p.add_argument("--batch-size", type=int, default=32, help="reward-model scoring batch size")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    from ..core.paths import outputs_dir

    samples = sfio.read_input(args, "responses", flag="--responses")
    out_dir = Path(args.out_dir) if args.out_dir else outputs_dir() / "best_of_n"
    named = [g for g in samples.get("generator", pd.Series(dtype=object)).astype(str) if g.strip()]
    policy = named[0] if named else "policy"  # the reader gives a file without generators an empty one
    for spec in args.rm:
        name, sep, folder = spec.partition("=")
        if not sep:
            name, folder = Path(spec).name, spec
        rm = load_reward_model(folder)
        scored = score_samples(samples, rm, batch_size=args.batch_size)
        best = select_best(scored, args.n, allow_fewer=args.allow_fewer)
        n = int(best["n_samples"].max())
        generator = args.generator or f"{policy}_best_of_{n}_{name}"
        path = write_model_outputs(to_model_outputs(best, generator), out_dir / f"{name}_outputs.json")
        sfio.write_table(scored, out_dir / f"{name}_scored.jsonl")
        curve = best_of_m_curve(check_samples(scored, args.n, allow_fewer=args.allow_fewer), seed=args.seed)
        sfio.write_table(curve, out_dir / f"{name}_best_of_m.jsonl")
        print(f"{name}: best of {n} for {len(best)} instructions -> {path}")
        print(curve.to_string(index=False))
    return 0
