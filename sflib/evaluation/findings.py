"""Stage 07's findings: every number notebook 07 and the study report show, computed here once.

:func:`findings` takes a study (and optionally the :class:`~sflib.evaluation.stage.EvaluationRun` the
notebook just made; else it runs the stage) and returns a :class:`~sflib.core.findings.Findings`:

- **counts**: the evaluation set, and per policy and protocol the instructions counted;
- **exclusions**: why every other instruction has no win value (one rule: :mod:`sflib.evaluation.winrate`'s
  ``dropped`` reasons; a recorded judge's missing answer is "not recorded"), and policies not evaluated;
- **estimates**: each win rate with ties as 0.5 and its **Wilson** interval, the win rate excluding
  ties beside it, the length-controlled win rate (or "not identifiable" when the fit's every weight is
  0), and the **paired** protocol effect (rating − ranking on the instructions both counted, paired
  bootstrap, exact sign test) of each policy;
- **tables**: ``alignment``, ``win rates``, ``protocol effect``, ``original rules``, ``by dataset``,
  ``policies compared``, ``lengths``, ``length buckets``, ``paper vs this run``;
- **figures** (saved as ``07_<name>``): ``winrates``, ``winrates_by_dataset`` (only when more than one
  dataset has counted instructions: with one it would repeat ``winrates``; ``absent`` says so), ``length``;
- **notes**: small-n flags (fewer than ``min_n`` instructions: no verdict), what cannot be computed.
"""
from __future__ import annotations

import math
from itertools import combinations

import pandas as pd

from ..core.findings import Estimate, Findings
from .analysis import by_dataset_table, compare_policies, length_analysis, mean_lengths, results_table
from .protocols import protocol_effects
from .winrate import WinRate

MIN_N = 10
WINRATE_COLUMNS = ["policy", "protocol", "n", "small_n", "wins", "ties", "losses", "winrate", "wilson_low",
                   "wilson_high", "winrate_excl_ties", "excl_low", "excl_high", "ci_sem", "ci_low", "ci_high",
                   "lc_winrate", "n_items", "dropped", "dropped_reasons"]


def _lc_estimate(r: WinRate) -> Estimate:
    name = f"{r.policy}, {r.protocol} protocol: length-controlled win rate"
    if r.lc_identifiable:
        return Estimate(name, r.lc_winrate, n=r.lc.n, unit="%",
                        note=f"AlpacaEval's standard error {r.lc_standard_error:.1f} (spread of the fitted predictions, "
                             "not a sampling interval)" + (f"; {r.lc.note}" if r.lc.note else ""))
    why = r.lc.note if r.lc is not None and r.lc.note else "no fit"
    if r.lc is not None and not math.isnan(r.lc.lc_winrate):
        why = "not identifiable: every weight of the fit is 0, so it would print 50 for any data"
    return Estimate(name, float("nan"), n=r.lc.n if r.lc is not None else 0, note=why)


def winrate_estimates(results: list[WinRate], min_n: int = MIN_N) -> list[Estimate]:
    """Per result: the win rate (ties 0.5, Wilson), the win rate excluding ties (Wilson) and the LC win rate."""
    out = []
    for r in results:
        few = f"fewer than {min_n} instructions: no verdict" if r.n < min_n else ""
        out.append(Estimate(f"{r.policy}, {r.protocol} protocol: win rate (ties 0.5)", r.winrate, r.wilson_low,
                            r.wilson_high, n=r.n, unit="%", method="Wilson 95%", note=few))
        lo, hi = r.excl_ties_interval
        out.append(Estimate(f"{r.policy}, {r.protocol} protocol: win rate excluding ties", r.winrate_excl_ties, lo, hi,
                            n=r.wins + r.losses, unit="%", method="Wilson 95%", note=f"{r.ties} ties left out"))
        out.append(_lc_estimate(r))
    return out


def effect_estimates(effects: pd.DataFrame, min_n: int = MIN_N) -> list[Estimate]:
    """The paired rating − ranking difference of each policy (percentage points)."""
    out = []
    for e in effects.to_dict("records"):
        note = (f"rating protocol favoured it on {e['rating_better']}, ranking on {e['ranking_better']}, same on "
                f"{e['same']}; exact sign test p = {e['p_sign']:.3g}" if e["p_sign"] is not None
                else "every instruction judged the same under both protocols")
        if e["n"] < min_n:
            note = f"fewer than {min_n} common instructions: no verdict; " + note
        out.append(Estimate(f"{e['policy']}: rating − ranking protocol, paired", e["diff"] if e["n"] else float("nan"),
                            e["diff_low"], e["diff_high"], n=e["n"], unit=" pts", method="paired bootstrap 95%",
                            note=note))
    return out


def winrate_table(results: list[WinRate], min_n: int = MIN_N) -> pd.DataFrame:
    t = results_table(results)
    if not len(t):
        return pd.DataFrame(columns=WINRATE_COLUMNS)
    return t.assign(small_n=t["n"] < min_n)[WINRATE_COLUMNS]


def by_dataset(results: list[WinRate], min_n: int = MIN_N) -> pd.DataFrame:
    """Per-dataset win rates with Wilson intervals; datasets with no counted instruction left out."""
    t = by_dataset_table(results)
    t = t[t["n"] > 0]
    return t.assign(small_n=t["n"] < min_n)


def repeats_overall(by_ds: pd.DataFrame) -> bool:
    """True when the per-dataset view has one dataset only: its figure would repeat the overall one."""
    return by_ds["dataset"].nunique() <= 1


def original_rules(run) -> tuple[pd.DataFrame | None, str]:
    """The original scripts' win rates beside ours (recorded feedback only) and a sentence saying whether
    ours reproduce them (same n, same win rate)."""
    from . import original_vs_ours, vendored_paths

    if not run.recorded or "ratings-RM" not in run.evaluations:
        return None, "The original rules apply to the paper's recorded feedback files only."
    v = vendored_paths()
    table = original_vs_ours(v["reference_ratings"], v["ratings_rm_ratings"], v["ratings_rm_rankings"],
                             {"ours": run.evaluations["ratings-RM"].results})
    bad = []
    for proto in ("rating", "ranking"):
        got = table[table["protocol"] == proto].set_index("computation")
        if got.loc["ours", "n"] != got.loc["original rules", "n"] or \
                abs(got.loc["ours", "winrate"] - got.loc["original rules", "winrate"]) > 1e-9:
            bad.append(proto)
    if bad:
        return table, f"**Our computation does NOT reproduce the original rules** under the {', '.join(bad)} protocol."
    return table, "Our computation reproduces the original rules exactly (same n, same win rate) under both protocols."


def paper_vs_run(study, results: list[WinRate], effects: pd.DataFrame, comparison: pd.DataFrame,
                 min_n: int = MIN_N) -> pd.DataFrame:
    """The paper's statements (abstract only) beside this run's numbers, with n: notebook 04's disagreement
    when the study has it, each win rate (Wilson), the paired protocol effect, the head-to-head."""
    import json

    from ..core import paper
    from ..study.folder import StudyError

    source = f"{paper.ARXIV}, Abstract"
    rows = []
    try:
        rep = json.loads(study.path_of("consistency", "report.json").read_text(encoding="utf-8"))
    except (StudyError, ValueError, OSError):
        rep = {}
    if rep.get("n_compared"):
        lo, hi = rep["ci95"]["consistency"]
        stated = paper.table("consistency").set_index("quantity")["paper_value"]
        rows.append({"quantity": "ratings and rankings disagree (%, notebook 04)",
                     "paper": f"{stated.get('disagreement, AI annotators (%)', float('nan')):g} (human and AI annotators)",
                     "this run": f"{100 * (1 - rep['consistency']):.1f} (95% CI {100 * (1 - hi):.1f}–{100 * (1 - lo):.1f})",
                     "n": rep["n_compared"], "source": source})
    for r in results:
        lc = f"length-controlled {r.lc_winrate:.1f}" if r.lc_identifiable else "length-controlled: not identifiable"
        rows.append({"quantity": f"win rate of {r.policy} vs {r.reference}, {r.protocol} protocol (%)",
                     "paper": "not transcribed in sflib/core/paper.py",
                     "this run": (f"{r.winrate:.1f} (Wilson 95% {r.wilson_low:.1f}–{r.wilson_high:.1f}; {lc})"
                                  if r.n >= min_n else f"n = {r.n}: too few for a number"), "n": r.n, "source": ""})
    for e in effects.to_dict("records"):
        rows.append({"quantity": f"{e['policy']}: rating − ranking protocol, paired (points)",
                     "paper": "the protocol decides which policy wins",
                     "this run": (f"{e['diff']:+.1f} (paired bootstrap {e['diff_low']:+.1f} to {e['diff_high']:+.1f}; "
                                  f"sign test p = {e['p_sign']:.2g})" if e["n"] >= min_n and e["p_sign"] is not None
                                  else f"n = {e['n']}: too few for a number"),
                     "n": e["n"], "source": f"{source} (qualitative)"})
    for proto in ("rating", "ranking"):
        got = comparison[comparison["protocol"] == proto] if len(comparison) else comparison
        if len(got):
            g = got.iloc[0]
            ours = (f"{g['policy_a']} − {g['policy_b']} = {g['diff']:+.1f} (bootstrap {g['ci_low']:+.1f} to "
                    f"{g['ci_high']:+.1f})" if g["n"] >= min_n
                    else f"not measurable: the two policies share {int(g['n'])} judged instructions")
        else:
            ours = "not measurable: fewer than two policies"
        rows.append({"quantity": f"rankings-RM vs ratings-RM, {proto} protocol",
                     "paper": "rankings-RM preferred" if proto == "ranking" else "rankings-RM not preferred",
                     "this run": ours, "n": int(got.iloc[0]["n"]) if len(got) else 0,
                     "source": f"{source} (qualitative)"})
    return pd.DataFrame(rows).set_index("quantity")


def _figures(run, table, by_ds, lengths, buckets, min_n) -> tuple[dict, dict]:
    from .. import plots

    figs, absent = {}, {}
    if len(table) and table["n"].sum():
        figs["winrates"] = plots.plot_winrates(table, min_n=min_n,
                                               title=f"Win rate against {run.reference} ({run.judge}); Wilson 95%")
    else:
        absent["winrates"] = "no win rate has a counted instruction"
    if len(by_ds) and not repeats_overall(by_ds):
        figs["winrates_by_dataset"] = plots.plot_winrates_by_dataset(by_ds, min_n=min_n)
    else:
        absent["winrates_by_dataset"] = ("one dataset only: the figure would repeat the overall one" if len(by_ds)
                                         else "no dataset has a counted instruction")
    if len(buckets):
        figs["length"] = plots.plot_length_analysis(lengths, buckets, min_n=min_n)
    else:
        absent["length"] = "no counted instruction with both output texts"
    return {k: f for k, f in figs.items() if f is not None}, absent


def findings(study, run=None, *, min_n: int = MIN_N, quick: bool = False, bootstrap: int = 2000,
             figures_dir=None) -> Findings:
    """Stage 07's findings for ``study`` (``run``: :func:`sflib.evaluation.stage.run`'s result; None reads the
    saved stage back, asking no judge)."""
    from .. import plots

    if run is None:
        from .stage import load

        run = load(study, n_boot=min(bootstrap, 200) if quick else bootstrap)
    results = run.results
    f = Findings(stage="07", title=f"Evaluation against {run.reference} ({run.judge})",
                 figures_folder=plots.study_figures_dir(study, figures_dir))
    n_items = max((r.n_items for r in results), default=0)
    f.counts["evaluation set (instructions)"] = n_items
    for r in results:
        f.counts[f"{r.policy}, {r.protocol} protocol: instructions counted"] = r.n
    f.exclusions = {k: v for k, v in (run.counts.get("reasons") or {}).items()}
    f.exclusions.update({f"{p}: not evaluated ({why})": 1 for p, why in run.not_evaluated.items()})

    table = winrate_table(results, min_n)
    effects = protocol_effects(results, n_boot=run.n_boot, seed=run.seed)
    names = list(run.evaluations)
    # every pair of policies, the first two (the paper's ratings-RM vs rankings-RM) first
    pairs = [compare_policies(run.evaluations[a].results, run.evaluations[b].results, n_boot=run.n_boot,
                              seed=run.seed) for a, b in combinations(names, 2)]
    pairs = [t for t in pairs if len(t)]
    comparison = pd.concat(pairs, ignore_index=True) if pairs else pd.DataFrame()
    if len(comparison):
        comparison = comparison.assign(small_n=comparison["n"] < min_n)
    by_ds = by_dataset(results, min_n)
    buckets = length_analysis(results) if results else pd.DataFrame(columns=["n"])
    buckets = buckets[buckets["n"] > 0].assign(small_n=lambda t: t["n"] < min_n)
    ref_al = next(iter(run.alignments.values()), None)
    lengths = (mean_lengths({run.reference: ref_al.items.rename(columns={"reference_output": "output"})[
        ["instruction", "output"]], **run.policy_outputs}) if ref_al is not None else pd.DataFrame())
    original, original_note = original_rules(run)

    f.estimates = winrate_estimates(results, min_n) + effect_estimates(effects, min_n)
    f.tables = {"alignment": (pd.concat({n: a.report().set_index("what")["count"] for n, a in run.alignments.items()},
                                        axis=1).fillna(0).astype(int) if run.alignments else pd.DataFrame()),
                "win rates": table, "protocol effect": effects, "by dataset": by_ds,
                "policies compared": comparison, "lengths": lengths, "length buckets": buckets,
                "paper vs this run": paper_vs_run(study, results, effects, comparison, min_n)}
    if original is not None:
        f.tables["original rules"] = original
    else:
        f.absent["original rules"] = original_note
    f.figures, f.absent = _figures(run, table, by_ds, lengths, buckets, min_n)
    f.notes = _notes(run, results, effects, comparison, by_ds, original_note, min_n)
    f.headline = _headline(results, effects, min_n)
    for name in [k for k, t in f.tables.items() if hasattr(t, "empty") and t.empty]:
        f.absent.setdefault(name, "no rows for this study")   # an empty table is not shown
        del f.tables[name]
    return f.detached()


def _headline(results, effects, min_n) -> str:
    counted = [r for r in results if r.n >= min_n]
    if not counted:
        return f"No win rate rests on {min_n} or more instructions."
    parts = [f"{r.policy} wins {r.winrate:.1f}% (Wilson 95% {r.wilson_low:.1f}–{r.wilson_high:.1f}, n = {r.n}) "
             f"under the {r.protocol} protocol" for r in counted]
    text = "; ".join(parts) + "."
    for e in effects.to_dict("records"):
        if e["n"] >= min_n and e["p_sign"] is not None:
            text += (f" Paired on the {e['n']} instructions both protocols judged, {e['policy']} scores "
                     f"{e['diff']:+.1f} points under the rating protocol vs the ranking protocol (paired bootstrap "
                     f"{e['diff_low']:+.1f} to {e['diff_high']:+.1f}; exact sign test p = {e['p_sign']:.2g}).")
    return text


def _pct(v) -> str:
    return "— (all ties)" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def _notes(run, results, effects, comparison, by_ds, original_note, min_n) -> list[str]:
    notes = []
    if not results:
        notes.append(f"No win rate: {run.counts.get('reason') or 'no policy outputs to evaluate'}.")
    few = [f"{r.policy} ({r.protocol}, n = {r.n})" for r in results if r.n < min_n]
    if few:
        notes.append(f"Fewer than {min_n} counted instructions, no verdict: {', '.join(few)}.")
    for r in results:
        if r.lc is not None and not r.lc_identifiable and not math.isnan(r.lc.lc_winrate):
            notes.append(f"{r.policy}, {r.protocol} protocol: the length-controlled fit is not identifiable "
                         "(cross-validation chose the strongest penalty, where every weight is 0); the raw win rate "
                         "is the summary.")
    for e in effects.to_dict("records"):
        notes.append(f"Protocol effect of {e['policy']}, paired on the {e['n']} instructions both protocols counted "
                     f"({e['only_rating']} rating-only and {e['only_ranking']} ranking-only left out): "
                     + (f"{e['rating_winrate']:.1f} under the rating protocol vs {e['ranking_winrate']:.1f} under the "
                        f"ranking protocol (ties as 0.5; excluding ties {_pct(e['rating_excl_ties'])} vs "
                        f"{_pct(e['ranking_excl_ties'])})." if e["n"] else "nothing to pair."))
    if len(comparison) and comparison["small_n"].all():
        notes.append(f"The two policies share fewer than {min_n} judged instructions under every protocol: "
                     "no head-to-head verdict.")
    notes.append(original_note)
    return notes
