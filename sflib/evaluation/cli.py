"""``python -m sflib winrate``: win rates of policies against a reference, judged or from recorded feedback.

With ``--judge`` the outputs are judged (:func:`sflib.evaluation.evaluate`, cached in ``--store``);
without it, from recorded feedback files (:func:`sflib.evaluation.winrates_from_recorded`):
``--policy-ratings`` / ``--reference-ratings`` for the rating protocol, ``--rankings`` for the ranking
protocol (the original headerless CSV, a rankings table, or AlpacaEval's ``annotations.json``, whose
weighted ``preference`` is kept as ``p_a`` for ``--verdicts soft``).

Exit status as every stage command (:mod:`sflib.io.outputs`): a protocol with no counted judgment
(n = 0) makes the run incomplete (status 3; the ``--json`` report goes to ``<name>.partial.json``
and a previous complete report is kept) unless ``--allow-partial``.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from ..core import data as sfdata
from ..feedback.soft_verdicts import VERDICTS
from ..io.outputs import INCOMPLETE, finish
from ..judges import get_judge
from ..judges.config import add_judge_options, judge_overrides
from ..core.stats import N_BOOT
from . import (PAPER_DATASETS, PROTOCOLS, WinRate, compare_policies, evaluate, original_winrate_from_rankings,
               original_winrate_from_ratings, winrates_from_recorded, with_difficulty)


def add_cli(subparsers) -> None:
    """``python -m sflib winrate``: with a judge, or offline from recorded feedback CSVs."""
    p = subparsers.add_parser(
        "winrate", help="win rate of policies against a reference under the rating and ranking protocols",
        description="Win rate of a policy's AlpacaEval model_outputs against a reference's. With --judge the "
                    "outputs are judged (cached in --store); without it, from recorded feedback CSVs "
                    "(--policy-ratings/--reference-ratings for the rating protocol, --rankings for the ranking "
                    "protocol) and the original scripts' rules are printed next to ours.")
    p.add_argument("--policy", action="append", required=True, metavar="P.json",
                   help="policy model_outputs JSON (repeat for several policies; two are also compared)")
    p.add_argument("--reference", required=True, metavar="R.json", help="reference model_outputs JSON")
    p.add_argument("--judge", help="judge name, e.g. openai:gpt-4o-mini, local:smollm2, recorded:<files>")
    p.add_argument("--protocol", choices=["rating", "ranking", "both"], default="both")
    p.add_argument("--store", help="annotation store (SQLite) the judge's answers are cached in "
                                   "(default outputs/annotations.sqlite)")
    p.add_argument("--no-store", action="store_true", help="do not cache the judge's answers")
    p.add_argument("--datasets", nargs="*", default=None,
                   help=f"only these reference datasets (default: all; the paper's: {' '.join(PAPER_DATASETS)})")
    p.add_argument("--limit", type=int, help="judge only the first N instructions (each policy)")
    p.add_argument("--policy-ratings", metavar="CSV", help="offline: recorded ratings of the policy outputs")
    p.add_argument("--reference-ratings", metavar="CSV", help="offline: recorded ratings of the reference outputs")
    p.add_argument("--rankings", metavar="FILE", help="offline: recorded decisions, reference = (a), policy = (b): "
                                                      "the headerless CSV, a rankings table, or AlpacaEval's "
                                                      "annotations.json (weighted preferences kept as p_a)")
    p.add_argument("--n-boot", type=int, default=N_BOOT)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verdicts", choices=VERDICTS, default="hard",
                   help="hard: parsed score / decision; soft: the judge's expected_score / p_a where stored "
                        "(falls back to hard, with a note, where missing)")
    p.add_argument("--json", metavar="OUT", help="write all results as JSON here (each result with lc_winrate)")
    p.add_argument("--mode", choices=["online", "batch"], default="online",
                   help="batch: the provider's Batch API (half price, resumable after a kill)")
    p.add_argument("--allow-partial", action="store_true",
                   help="accept a protocol with no counted judgment (n = 0): exit 0, --json written in place")
    add_judge_options(p)
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    protocols = PROTOCOLS if args.protocol == "both" else (args.protocol,)
    recorded = args.policy_ratings or args.reference_ratings or args.rankings
    if not args.judge and not recorded:
        raise ValueError("give --judge NAME, or recorded feedback (--policy-ratings and --reference-ratings, "
                         "and/or --rankings) for the offline mode")
    if args.judge and recorded:
        raise ValueError("--judge and recorded feedback files are two different modes; give one of them")
    out: dict[str, Any] = {"reference": str(args.reference), "policies": {}}
    per_policy: dict[str, dict[str, WinRate]] = {}
    if args.judge:
        store = False if args.no_store else args.store   # None: outputs/annotations.sqlite
        limits = judge_overrides(args)
        judge = get_judge(args.judge, **limits) if limits else args.judge
        evaluations = {}
        for path in args.policy:
            ev = evaluate(path, args.reference, judge, protocols, store=store, datasets=args.datasets,
                          limit=args.limit, n_boot=args.n_boot, seed=args.seed, verdicts=args.verdicts,
                          mode=args.mode)
            evaluations[ev.policy] = ev
        for name, ev in with_difficulty(evaluations).items():
            per_policy[name] = ev.results
            out["policies"][name] = ev.summary()
    else:
        if len(args.policy) != 1:
            raise ValueError("the offline mode evaluates one --policy (the one the recorded feedback is of)")
        if bool(args.policy_ratings) != bool(args.reference_ratings):
            raise ValueError("the rating protocol needs both --policy-ratings and --reference-ratings")
        res = winrates_from_recorded(args.policy[0], args.reference, policy_ratings=args.policy_ratings,
                                     reference_ratings=args.reference_ratings, rankings=args.rankings,
                                     datasets=args.datasets, n_boot=args.n_boot, seed=args.seed,
                                     verdicts=args.verdicts)
        given = {"rating": bool(args.policy_ratings), "ranking": bool(args.rankings)}
        if args.protocol == "both":  # the protocols whose recorded files were given
            protocols = tuple(p for p in protocols if given[p])
        elif not given[args.protocol]:
            raise ValueError(f"--protocol {args.protocol}: no recorded feedback for it was given ("
                             + ("--policy-ratings and --reference-ratings" if args.protocol == "rating"
                                else "--rankings") + ")")
        res = {p: r for p, r in res.items() if p in protocols}
        name = next(iter(res.values())).policy
        per_policy[name] = res
        original = {}
        if args.policy_ratings and "rating" in protocols:
            original["rating"] = original_winrate_from_ratings(args.reference_ratings, args.policy_ratings).summary()
        if args.rankings and "ranking" in protocols:
            original["ranking"] = original_winrate_from_rankings(args.rankings).summary()
        out["policies"][name] = {"results": {p: r.summary() for p, r in res.items()}, "original_rules": original}
    for name, res in per_policy.items():
        for r in res.values():
            print(r)
        orig = out["policies"][name].get("original_rules", {})
        for proto, o in orig.items():
            print(f"  original rules ({proto}): {o['winrate']:.1f} ± {o['ci_sem']:.1f}, n={o['n']} "
                  f"(W/T/L {o['wins']}/{o['ties']}/{o['losses']})")
    names = list(per_policy)
    if len(names) == 2:
        a, b = per_policy[names[0]], per_policy[names[1]]
        cmps = [compare_policies(a[p], b[p], n_boot=args.n_boot, seed=args.seed) for p in a if p in b]
        out["comparison"] = [c.summary() for c in cmps]
        for c in cmps:
            print(c)
    empty = [f"{name} ({r.protocol})" for name, res in per_policy.items() for r in res.values() if r.n == 0]
    problem = None
    if empty:
        problem = (f"incomplete: no judgment counted for {', '.join(empty)} (n = 0; see 'dropped' above for why)")
    text = json.dumps(out, indent=2, ensure_ascii=False, default=str)
    if args.json:
        return finish(args.json, lambda path: sfdata.atomic_write_text(path, text), problem,
                      allow_partial=args.allow_partial,
                      retry_hint="Re-run once the judgments exist (a judge's failed requests are retried)")
    if problem:
        print(problem, file=sys.stderr)
        return 0 if args.allow_partial else INCOMPLETE
    return 0
