"""Stage 06's findings: every number notebook 06 and the study report show, computed here once.

:func:`findings` takes a study and the :class:`~sflib.bon.stage.BestOfNRun` the notebook just made (None
reads the saved stage back) and returns a :class:`~sflib.core.findings.Findings`:

- **counts**: the evaluation set, the instructions sampled, samples (empty, cut at the token limit), and for
  a seeded study what notebook 07 gets (the released outputs);
- **estimates**: the share of instructions where the two RMs pick the same sample at m = n (Wilson 95%)
  beside chance (1/n), the rank correlation of the two RMs' rewards, the mean reward gain of best-of-n over
  a random sample (the RM's own score; bootstrap 95% over instructions);
- **tables**: ``what 07 gets``, ``reward models``, ``rewards``, ``selection``, ``reward vs m``,
  ``agreement``, ``length bias``, ``examples``;
- **figures** (titled "demo" for a demonstration; saved as ``06_<name>``): ``reward_vs_m``, ``rm_agreement``, ``length_bias``
  (left out, with a note, when most samples were cut at the token limit: their lengths measure the limit).
"""
from __future__ import annotations

import math

import pandas as pd

from ..core.findings import Estimate, Findings
from ..core.stats import at_chance, bootstrap_ci, wilson
from .curves import agreement, best_of_m_curve, best_of_m_selections, length_by_m, words

#: above this share of samples cut at the token limit, the length-bias view is not drawn
MAX_TRUNCATED = 0.25


def released_table(released: dict, evaluation: pd.DataFrame) -> pd.DataFrame:
    """What notebook 07 gets in a seeded study: per released file, its outputs, how many are in the
    evaluation set, the generator and the mean length in words."""
    in_set = set(evaluation["instruction"]) if len(evaluation) else set()
    return pd.DataFrame({name: {"outputs": len(df), "in the evaluation set": int(df["instruction"].isin(in_set).sum()),
                                "generator": df["generator"].iloc[0] if len(df) else "",
                                "mean words": round(float(df["output"].map(words).mean()), 1) if len(df) else float("nan")}
                         for name, df in released.items()}).T


def same_pick_estimate(table: pd.DataFrame) -> Estimate | None:
    """Share ×100 of instructions where both RMs select the same sample at the largest m, Wilson 95%,
    beside chance 1/m. None without an agreement table."""
    if not len(table):
        return None
    last = table.iloc[-1]
    k, n, m = round(last["same_sample"] * last["n_instructions"]), int(last["n_instructions"]), int(last["m"])
    low, high = wilson(k, n)
    verdict = "within chance" if at_chance(last["same_sample"], n, chance=1 / m) else "differs from chance"
    return Estimate(f"both RMs pick the same sample (best of {m})", 100 * last["same_sample"], 100 * low, 100 * high,
                    n=n, unit="%", method="Wilson 95%", note=f"chance {100 / m:.1f}% (1/{m}); {verdict}")


def gain_estimate(scored: pd.DataFrame, selected: pd.DataFrame, kind: str, seed: int = 0) -> Estimate:
    """Mean over instructions of (reward of the best-of-n pick − mean reward of the instruction's samples),
    with a bootstrap interval: how much the RM's own score rises by selecting (≥ 0 by construction)."""
    mean = scored.groupby("instruction_id")["reward"].mean()
    gain = (selected.set_index("instruction_id")["reward"] - mean).dropna().to_numpy(float)
    lo, hi = bootstrap_ci(gain, seed=seed)
    return Estimate(f"{kind} RM: reward gain of best-of-n over a random sample", float(gain.mean()) if len(gain)
                    else float("nan"), lo, hi, n=len(gain), method="bootstrap 95%",
                    note="the RM's own score of what it picked; whether the picks are better is for notebook 07")


def _figures(run, curves, agree, lengths, tag) -> tuple[dict, dict]:
    from .. import plots

    figs, absent = {}, {}
    if curves:
        figs["reward_vs_m"] = plots.plot_best_of_m(curves, title=f"{tag}Reward of the best-of-m selection vs m")
    else:
        absent["reward_vs_m"] = "no scored samples" + (" (the demonstration is not saved)" if run.seeded else "")
    if len(agree):
        n = int(agree["n_instructions"].max())
        figs["rm_agreement"] = plots.plot_rm_agreement(agree, title=f"{tag}ratings RM and rankings RM pick the same "
                                                                    f"sample (n={n} instructions)")
    else:
        absent["rm_agreement"] = "needs both reward models' selections"
    if len(lengths):
        figs["length_bias"] = plots.plot_length_bias(lengths, truncated_share=run.truncated_share,
                                                     title=f"{tag}Length of the best-of-m output vs all samples")
    else:
        absent["length_bias"] = (f"{100 * run.truncated_share:.0f}% of the samples were cut at the token limit: their "
                                 "lengths measure the limit" if curves else "no selections")
    return {k: f for k, f in figs.items() if f is not None}, absent


def findings(study, run=None, *, quick: bool = False, bootstrap: int = 2000, figures_dir=None) -> Findings:
    """Stage 06's findings for ``study`` (``run``: :func:`sflib.bon.stage.run`'s result; None reads the saved
    stage back with :func:`sflib.bon.stage.load`: nothing is sampled or scored)."""
    from .. import plots

    if run is None:
        from .stage import load

        run = load(study)
    seed = study.config.seed
    demo = run.seeded
    tag = f"demo: {run.generator}, {len(run.asked)} instructions × n = {run.n}, ≤ {run.max_new_tokens} tokens — " \
        if demo else ""
    read_back = run.seeded and not len(run.samples)  # a seeded stage read back: the released outputs only
    title = ("Best-of-n: the paper's released best-of-64 outputs (the CPU demonstration is not saved)" if read_back
             else ("Demonstration: " if demo else "") + f"best-of-{run.n} with notebook 05's reward models")
    f = Findings(stage="06", title=title,
                 figures_folder=plots.study_figures_dir(study, figures_dir))
    ev = run.evaluation_instructions
    f.counts = {"evaluation instructions": len(ev)}
    if run.seeded:
        for name, df in run.released.items():
            f.counts[f"released {name} outputs (for notebook 07)"] = len(df)
    if not read_back:
        f.counts.update({"instructions sampled" + (" (demonstration)" if demo else ""): len(run.asked),
                         "samples per instruction": run.n, "samples": len(run.samples),
                         "samples cut at the token limit": run.cut})
    if run.empty:
        f.exclusions["empty samples (kept as candidates: the RM judges them)"] = run.empty
    f.exclusions.update({f"{r['reward model']} not used: {r['note']}": 1 for r in run.rm_rows if not r["used"]})

    selections = {k: best_of_m_selections(sc, seed=seed) for k, sc in run.scored.items() if k in run.best}
    curves = {f"{k}_rm": best_of_m_curve(run.scored[k], seed=seed) for k in selections}
    agree = agreement(selections["ratings"], selections["rankings"]) if {"ratings", "rankings"} <= set(selections) \
        else pd.DataFrame()
    show_lengths = selections and run.truncated_share <= MAX_TRUNCATED
    lengths = length_by_m(run.samples, {f"{k}_rm": s for k, s in selections.items()}) if show_lengths else pd.DataFrame()

    rewards = pd.DataFrame({f"{k} RM": sc["reward"] for k, sc in run.scored.items()})
    pair = [c for c in ("ratings RM", "rankings RM") if c in rewards] if rewards.shape[1] > 2 else list(rewards)
    if len(pair) == 2 and len(rewards) > 2:  # more RMs (reward_models.protocols): still the paper's two
        rho = float(rewards[pair].corr(method="spearman").iloc[0, 1])
        f.estimates.append(Estimate("Spearman ρ of the two RMs' rewards over all samples", rho, n=len(rewards)))
    f.estimates += [gain_estimate(run.scored[k], b, k, seed) for k, b in run.best.items()]
    same = same_pick_estimate(agree)
    if same is not None:
        f.estimates.append(same)

    f.tables = {"reward models": pd.DataFrame(run.rm_rows).set_index("reward model") if run.rm_rows else pd.DataFrame(),
                "rewards": rewards.describe().T[["mean", "std", "min", "max"]] if len(rewards) else pd.DataFrame(),
                "selection": _selection_table(run),
                "reward vs m": pd.concat(curves, names=["reward model"]).droplevel(1) if curves else pd.DataFrame(),
                "agreement": agree,
                "length bias": (lengths.pivot(index="m", columns="selector", values="mean_words") if len(lengths)
                                else pd.DataFrame()),
                "examples": _examples(run)}
    if run.seeded:
        f.tables["what 07 gets"] = released_table(run.released, ev)
    else:
        f.absent["what 07 gets"] = "this study computes its own selections: notebook 07 evaluates those (below)"
    f.figures, f.absent = _figures(run, curves, agree, lengths, tag)
    f.notes = _notes(run, selections, study)
    same = f.estimates[-1] if f.estimates and f.estimates[-1].name.startswith("both RMs") else None
    f.headline = ("Notebook 07 evaluates the paper's released best-of-64 outputs." if read_back else
                  ("Demonstration (feeds nothing downstream): " if demo else "")
                  + (f"the two reward models pick the same sample for {same.value:.1f}% of {same.n} instructions "
                     f"(Wilson 95% {same.low:.1f}–{same.high:.1f}; {same.note})." if same is not None
                     else "no comparison of the two reward models' picks."))
    for name in [k for k, t in f.tables.items() if hasattr(t, "empty") and t.empty]:
        f.absent.setdefault(name, "no rows for this study")   # an empty table is not shown
        del f.tables[name]
    return f.detached()


def _selection_table(run) -> pd.DataFrame:
    return pd.DataFrame({f"{k} RM": {"instructions": len(b), "empty outputs": int((b["response"].str.strip() == "").sum()),
                                     "mean reward of selection": round(float(b["reward"].mean()), 3),
                                     "mean reward of all samples": round(float(run.scored[k]["reward"].mean()), 3)}
                         for k, b in run.best.items()}).T


def _examples(run, k: int = 4, width: int = 250) -> pd.DataFrame:
    if not {"ratings", "rankings"} <= set(run.best):
        return pd.DataFrame()
    a, b = run.best["ratings"], run.best["rankings"]
    pairs = a[["instruction_id", "instruction", "sample", "response", "reward"]].merge(
        b[["instruction_id", "sample", "response", "reward"]], on="instruction_id",
        suffixes=(" (ratings RM)", " (rankings RM)")).drop(columns="instruction_id").head(k)
    return pairs.assign(**{c: pairs[c].astype(str).str.slice(0, width) for c in pairs.columns
                           if pairs[c].dtype == object}).T


def _notes(run, selections, study) -> list[str]:
    notes = []
    if run.seeded and not len(run.samples):
        seeded = ", ".join((study.manifest("best_of_n") or {}).get("seeded_from", []))
        return [f"This study's best-of-n outputs are the paper's released best-of-64 outputs ({seeded}); notebook 07 "
                "evaluates those. The CPU demonstration notebook 06 runs beside them is not saved (it feeds nothing "
                "downstream), so read back from the study folder this stage has only the released outputs."]
    if run.seeded:
        seeded = ", ".join((study.manifest("best_of_n") or {}).get("seeded_from", []))
        notes.append(f"This study's best-of-n outputs are the paper's released best-of-64 outputs ({seeded}); notebook "
                     f"07 evaluates those. Everything else here is a **demonstration** on the CPU ({len(run.asked)} "
                     f"instructions × n = {run.n} samples from {run.generator}, at most {run.max_new_tokens} new "
                     "tokens) that feeds nothing downstream: it shows the machinery, not the paper's result.")
    if len(run.samples) or run.scored:
        from ..core.threads import describe

        notes.append(f"Sampled and scored on this machine with {describe()}.")
    if len(run.samples):
        notes.append(f"{run.cut} of {len(run.samples)} samples ({100 * run.truncated_share:.0f}%) were cut at "
                     f"{run.max_new_tokens} new tokens; {run.empty} empty.")
    if selections and run.truncated_share > MAX_TRUNCATED:
        notes.append(f"Length bias not shown: {100 * run.truncated_share:.0f}% of the samples were cut at the token "
                     "limit, so their lengths measure the limit, not what the reward models prefer.")
    if not run.best:
        notes.append("No best-of-n selection: " + ("no reward model from notebook 05." if not run.scored
                                                   else "no samples to select from."))
    chance = _held_out_at_chance(study)
    if chance:
        notes.append(f"{' and '.join(chance)} at chance on notebook 05's held-out pairs: their picks are "
                     "indistinguishable from random choices.")
    from ..core import paper

    if paper.table("best_of_n").empty:
        notes.append("The paper's best-of-n numbers are not transcribed in `sflib/core/paper.py`.")
    return notes


def _held_out_at_chance(study) -> list[str]:
    m05 = study.manifest("reward_models") or {}
    if "held_out.jsonl" not in m05.get("files", []):
        return []
    try:
        held = study.read("reward_models", "held_out")
    except ValueError:
        return []
    return [r["reward_model"] for r in held.to_dict("records")
            if r.get("n_pairs") and not (isinstance(r.get("pairwise_accuracy"), float) and math.isnan(r["pairwise_accuracy"]))
            and at_chance(r["pairwise_accuracy"], int(r["n_pairs"]))]


__all__ = ["findings", "released_table", "same_pick_estimate", "gain_estimate", "MAX_TRUNCATED"]
