"""``python -m sflib study plan|status|run|report STUDY [--only 02,03] [--quick] [-p name value]``.

STUDY is a study YAML file or the name of one in ``studies/`` (default ``paper``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def _table(df: pd.DataFrame, money: list[str]) -> str:
    df = df.copy()
    for c in money:
        df[c] = [("unknown" if v != v else f"${v:,.4f}" if 0 < v < 1 else f"${v:,.2f}") for v in df[c]]
    for c in df.columns:
        if df[c].dtype.kind in "iu":
            df[c] = [f"{v:,}" for v in df[c]]
        elif df[c].dtype.kind == "f":
            df[c] = ["" if v != v else f"{v:,.0f}" for v in df[c]]
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 90):
        return df.to_string(index=False)


def _plan(args) -> int:
    from . import load
    from .planner import CHARS_PER_TOKEN, JUDGE_REPLY_TOKENS, plan

    study = load(args.study)
    df = plan(study).drop(columns=["notebook"])
    print(f"study {study.name} ({study.path}): planned calls, tokens and dollars per stage")
    print(_table(df, ["usd", "usd_to_pay"]))
    budget = study.config.budget_usd
    print(f"\ntokens: characters / {CHARS_PER_TOKEN}; judge replies {JUDGE_REPLY_TOKENS} tokens, policy replies "
          f"max_new_tokens (upper bound); 'stored': answers already in {study.store_path}")
    if budget is not None:
        total = float(df["usd_to_pay"].iloc[-1])
        verdict = "within" if total <= budget else "OVER"
        print(f"budget_usd: ${budget:,.2f} — the plan's ${total:,.2f} still to pay is {verdict} it")
    return 0


def _status(args) -> int:
    from . import load
    from .planner import status

    study = load(args.study)
    df = status(study)
    df["folder"] = [f"{Path(f).name}/" if stage != "total" else "" for stage, f in zip(df["stage"], df["folder"])]
    print(f"study {study.name}: outputs in {study.folder}")
    print(_table(df, ["spent_usd"]))
    return 0


def _value(text: str):
    from papermill.cli import _resolve_type

    return _resolve_type(text)


def _run(args) -> int:
    from .runner import BudgetExceeded, NotebookFailed, run

    params = {name: _value(value) for name, value in (args.parameters or [])}
    try:
        result = run(args.study, only=args.only, quick=args.quick, params=params, progress=not args.no_progress,
                     skip_done=args.skip_done,
                     notebooks_dir=Path(args.notebooks) if args.notebooks else None,
                     log=lambda m: print(m, file=sys.stderr))
    except (BudgetExceeded, NotebookFailed) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(result.timings.to_string(index=False), file=sys.stderr)
    return 0


def _report(args) -> int:
    from . import load
    from .report import write_report

    from .report import copy_docs_figures

    study = load(args.study)
    path = write_report(study, args.output, bootstrap=args.bootstrap, log=lambda m: print(m, file=sys.stderr))
    print(f"wrote {path}")
    if args.docs_figures:
        try:
            copied = copy_docs_figures(study, args.docs_figures)
        except FileNotFoundError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"copied {len(copied)} figure(s) of this run into {args.docs_figures}: "
              + ", ".join(p.name for p in copied))
    return 0


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("study", help="plan, check and run a whole study (a YAML file in studies/)",
                              description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="study_command", metavar="plan|status|run|report", required=True)
    for name, func, text in (("plan", _plan, "calls, tokens and dollars per stage before anything is paid"),
                             ("status", _status, "per stage: done / seeded / missing / stale, counts, spent"),
                             ("run", _run, "run the notebooks in order with papermill"),
                             ("report", _report, "one self-contained HTML file of the study's findings")):
        q = sub.add_parser(name, help=text, description=text)
        q.add_argument("study", nargs="?", default="paper", help="study YAML file or a name in studies/ (default: paper)")
        if name == "run":
            q.add_argument("--only", help="only these notebook numbers, e.g. 02,03")
            q.add_argument("--quick", action="store_true", help="every notebook in its fast smoke mode")
            q.add_argument("--skip-done", action="store_true",
                           help="do not run again a notebook whose stage is done and current (no retraining, "
                                "no re-reading of cached answers); 00 and 08 always run")
            q.add_argument("-p", "--parameters", nargs=2, action="append", metavar=("NAME", "VALUE"),
                           help="a papermill parameter for every notebook (repeatable)")
            q.add_argument("--no-progress", action="store_true", help="no papermill progress bars")
            q.add_argument("--notebooks", help="folder of NN_*.ipynb notebooks to run (default: the repository's notebooks/)")
        if name == "report":
            q.add_argument("--output", "-o", help="the HTML file to write (default: <study folder>/report.html)")
            q.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the intervals")
            q.add_argument("--docs-figures", metavar="DIR",
                           help="also refresh the PNGs already in DIR (e.g. docs/figures) from this run's figures")
        q.set_defaults(func=func)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sflib")
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
