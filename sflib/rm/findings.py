"""Stage 05's findings: every number notebook 05 and the study report show, computed here once.

:func:`findings` takes a study (and optionally the :class:`~sflib.rm.stage.RewardModelsRun` the notebook
just made; else it reads the saved stage back: nothing is trained) and returns a :class:`~sflib.core.findings.Findings`:

- **counts / exclusions**: ratings read and kept by the rule of notebooks 02/04 (one valid rating per
  response, the first), ranked pairs usable (a or b; ties and missing decisions left out), the split (the
  first note says which: the paper's released train/val split or a seeded split by instruction), and the
  torch threads that trained (``torch threads``);
- **estimates**, each beside its baseline with an interval: held-out pairwise accuracy (Wilson 95%)
  against chance (50%); the ratings RM's held-out MSE (bootstrap 95%) against the **constant predictor**
  that always predicts the mean training target, with the paired bootstrap interval of the difference
  (negative = the RM beats the constant); Spearman's ρ of rewards with the held-out scores (Fisher-z
  interval, SE 1.06/√(n − 3)) against 0;
- **tables**: ``feedback stages`` (02/03's manifests: n / valid / invalid / failed and why), ``data``, ``training``,
  ``held-out``, ``rewards by score``;
- **figures** (titled "demo" for a CPU demonstration; saved as ``05_<name>``): ``rm_loss_curves``,
  ``rm_accuracy``, ``rewards_by_score``.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..core.findings import Estimate, Findings
from ..core.stats import at_chance, bootstrap_ci, wilson

MIN_N = 10


def wilson_percent(accuracy: float, n: int) -> tuple[float, float]:
    """Wilson 95% interval ×100 of an accuracy on n pairs (equal rewards count one half, rounded)."""
    low, high = wilson(round(accuracy * n), n)
    return 100 * low, 100 * high


def accuracy_estimate(name: str, accuracy: float, n: int) -> Estimate:
    """Held-out pairwise accuracy ×100 with its Wilson interval; the note says whether it is at chance."""
    if not n:
        return Estimate(f"{name}: held-out pairwise accuracy", float("nan"), n=0, note="no held-out ranked pairs")
    low, high = wilson_percent(accuracy, n)
    verdict = "at chance (the interval includes 50%)" if at_chance(accuracy, n) else "better than chance" \
        if low > 50 else "worse than chance"
    return Estimate(f"{name}: held-out pairwise accuracy", 100 * accuracy, low, high, n=n, unit="%",
                    method="Wilson 95%", note=f"chance 50%; {verdict}")


def mse_against_constant(train_targets, held: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """The ratings RM's held-out MSE (``held``: :func:`sflib.rm.metrics.held_out_ratings`) beside the MSE
    of the constant predictor = the mean training target, each with a bootstrap interval over held-out
    ratings, and their paired difference (RM − constant). NaN where there is nothing to compute."""
    nan = float("nan")
    t = np.asarray(held["target"], dtype=float) if len(held) else np.zeros(0)
    p = np.asarray(held["predicted"], dtype=float) if len(held) else np.zeros(0)
    train = np.asarray(train_targets, dtype=float)
    const = float(train.mean()) if len(train) else nan
    out = {"n": len(t), "constant": const}
    if not len(t) or math.isnan(const) or np.isnan(p).all():
        return {**out, **{k: nan for k in ("mse", "mse_low", "mse_high", "mse_constant", "constant_low",
                                           "constant_high", "diff", "diff_low", "diff_high")}}
    se_rm, se_c = (p - t) ** 2, (const - t) ** 2
    return {**out, "mse": float(se_rm.mean()),
            **dict(zip(("mse_low", "mse_high"), bootstrap_ci(se_rm, n_boot=n_boot, seed=seed))),
            "mse_constant": float(se_c.mean()),
            **dict(zip(("constant_low", "constant_high"), bootstrap_ci(se_c, n_boot=n_boot, seed=seed))),
            "diff": float((se_rm - se_c).mean()),
            **dict(zip(("diff_low", "diff_high"), bootstrap_ci(se_rm - se_c, n_boot=n_boot, seed=seed)))}


def spearman_interval(rho: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Fisher-z interval of Spearman's ρ (SE 1.06/√(n − 3), Fieller et al.); NaN for n < 4 or undefined ρ."""
    from scipy.stats import norm

    if n < 4 or rho is None or math.isnan(rho):
        return float("nan"), float("nan")
    z, se = math.atanh(max(min(rho, 0.999999), -0.999999)), 1.06 / math.sqrt(n - 3)
    q = norm.ppf(0.5 + level / 2)
    return math.tanh(z - q * se), math.tanh(z + q * se)


def held_out_table(run, mse: dict) -> pd.DataFrame:
    """One row per RM: accuracy with Wilson interval and chance, Spearman with interval, MSE beside the constant."""
    rows = []
    for name, r in run.held_out.iterrows():
        n = int(r["n_pairs"])
        lo, hi = wilson_percent(r["pairwise_accuracy"], n) if n else (float("nan"), float("nan"))
        s_lo, s_hi = spearman_interval(r["spearman"], int(r["n_ratings"]))
        row = {"reward model": name, "pairs": n, "accuracy %": 100 * r["pairwise_accuracy"], "Wilson low": lo,
               "Wilson high": hi, "chance %": 50.0, "ratings": int(r["n_ratings"]), "spearman": r["spearman"],
               "spearman low": s_lo, "spearman high": s_hi, "MSE": r["mse"]}
        if name == "ratings RM":
            row.update({"MSE constant predictor": mse["mse_constant"], "MSE − constant": mse["diff"],
                        "difference low": mse["diff_low"], "difference high": mse["diff_high"]})
        rows.append(row)
    return pd.DataFrame(rows).set_index("reward model") if rows else pd.DataFrame()


def _figures(run) -> tuple[dict, dict]:
    from .. import plots

    tag = f"demo: {run.backbone} on CPU, {len(run.val_ids)} held-out instructions — " if run.demo else ""
    figs, absent = {}, {}
    histories = {k: r["log_history"] for k, r in run.trained.items() if r.get("log_history")}
    if histories:
        figs["rm_loss_curves"] = plots.plot_rm_loss_curves(histories, title=f"{tag}Reward-model loss curves")
    else:
        absent["rm_loss_curves"] = ("no reward model was trained" if not run.trained
                                    else "this stage's metrics.json has no loss history (written by an older sflib)")
    if len(run.held_out):
        acc = {name: (r.pairwise_accuracy, int(r.n_pairs)) for name, r in run.held_out.iterrows()}
        figs["rm_accuracy"] = plots.plot_rm_accuracy(acc, title=f"{tag}Held-out pairwise accuracy "
                                                                f"({run.backbone}; Wilson 95%)")
    else:
        absent["rm_accuracy"] = "no trained reward model to evaluate"
    if {"ratings_reward", "rankings_reward"} <= set(run.scored.columns):
        figs["rewards_by_score"] = plots.plot_rewards_by_score(run.scored, title=f"{tag}Reward per rating score")
    else:
        absent["rewards_by_score"] = "needs both reward models and some valid ratings"
    return {k: f for k, f in figs.items() if f is not None}, absent


def findings(study, run=None, *, quick: bool = False, bootstrap: int = 2000, figures_dir=None) -> Findings:
    """Stage 05's findings for ``study`` (``run``: :func:`sflib.rm.stage.run`'s result; None reads the saved
    stage back with :func:`sflib.rm.stage.load`: nothing is trained)."""
    from .. import plots

    if run is None:
        from .stage import load

        run = load(study)
    n_boot = min(bootstrap, 200) if quick else bootstrap
    rc = run.rating_counts
    usable_pairs = int(run.rankings["decision"].isin(["a", "b"]).sum()) if "decision" in run.rankings else 0
    lora = " with LoRA" if run.settings.get("lora") else ""
    steps = "a few steps (quick mode)" if run.settings.get("max_steps", -1) > 0 else f"{run.settings.get('epochs')} epoch(s)"
    f = Findings(stage="05", title=("Demonstration: " if run.demo else "") + f"reward models on {run.backbone}{lora}, "
                 f"{steps}, trained on feedback from {run.judge} (study {study.name})",
                 figures_folder=plots.study_figures_dir(study, figures_dir))
    released = run.split.get("kind") == "released"
    f.counts = {"ratings read": rc["rows"], "responses rated": rc["used"], "pairs ranked": len(run.rankings),
                "pairs with a preference (a or b)" + ("" if released else ", for the rankings RM"): usable_pairs,
                "held-out instructions": len(run.val_ids)}
    if released:
        f.counts.update({"released split: train pairs": run.split["train_pairs"],
                         "released split: val pairs": run.split["val_pairs"]})
    for kind, (train, held) in run.splits.items():
        f.counts[f"{kind}: training rows"] = len(train)
        f.counts[f"{kind}: held-out rows"] = len(held)
    if run.torch_threads:
        f.counts["torch threads"] = int(run.torch_threads)
    f.exclusions = {f"ratings: {k}": v for k, v in (rc.get("exclusions") or {}).items() if v}
    f.exclusions.update({f"rankings: {k}": v for k, v in run.ranking_exclusions.items() if v})
    ties = int((run.rankings["decision"] == "equal").sum()) if "decision" in run.rankings else 0
    if ties:
        f.exclusions["rankings: tie (left out of the Bradley–Terry loss)"] = ties
    if run.split.get("not_in_rankings"):
        f.notes.append(f"{run.split['not_in_rankings']:,} of the released train/val pairs do not occur among the "
                       "rankings stage's pairs (their texts differ); the rankings RM trains and is validated on them "
                       "as released.")
    if run.split.get("not_in_split"):
        f.exclusions["rankings: pair with a preference not in the released train/val split"] = run.split["not_in_split"]
    f.exclusions.update({f"{k} RM not trained: {why}": 1 for k, why in run.notes.items() if run.runs.get(k) is None})

    train_ratings = run.splits["ratings"][0]
    targets = (train_ratings["score"].astype(float) - 1) / 6 if len(train_ratings) else []
    mse = mse_against_constant(targets, run.held_ratings.get("ratings RM", pd.DataFrame()), n_boot=n_boot,
                               seed=study.config.seed)
    for name, r in run.held_out.iterrows():
        f.estimates.append(accuracy_estimate(name, r["pairwise_accuracy"], int(r["n_pairs"])))
        lo, hi = spearman_interval(r["spearman"], int(r["n_ratings"]))
        f.estimates.append(Estimate(f"{name}: Spearman ρ with held-out scores", r["spearman"], lo, hi,
                                    n=int(r["n_ratings"]), method="Fisher z 95%", note="chance 0", ))
    if mse["n"] and not math.isnan(mse["mse"]):
        k = 1000  # MSEs on the [0, 1] target scale are small: shown ×1000
        f.estimates += [
            Estimate("ratings RM: held-out MSE ×1000", k * mse["mse"], k * mse["mse_low"], k * mse["mse_high"],
                     n=mse["n"], method="bootstrap 95%"),
            Estimate("constant predictor (mean training target): held-out MSE ×1000", k * mse["mse_constant"],
                     k * mse["constant_low"], k * mse["constant_high"], n=mse["n"], method="bootstrap 95%",
                     note=f"predicts {mse['constant']:.3f} = score {1 + 6 * mse['constant']:.2f} for every response"),
            Estimate("ratings RM − constant predictor: MSE difference ×1000", k * mse["diff"], k * mse["diff_low"],
                     k * mse["diff_high"], n=mse["n"], method="paired bootstrap 95%",
                     note="positive: the RM is worse than predicting the mean" if mse["diff"] > 0 else
                     "negative: the RM beats predicting the mean")]

    from ..study.findings import stage_counts

    f.tables = {"feedback stages": stage_counts(study, ["ratings", "rankings"]), "data": _data_table(run),
                "training": _training_table(run), "held-out": held_out_table(run, mse),
                "rewards by score": _rewards_table(run)}
    f.figures, f.absent = _figures(run)
    f.notes = _notes(run, mse)
    f.headline = _headline(run, mse)
    from .protocols import add_findings

    add_findings(f, run)  # reward_models.protocols' RMs: their table, own held-out accuracy, conversions
    for name in [k for k, t in f.tables.items() if hasattr(t, "empty") and t.empty]:
        f.absent.setdefault(name, "no rows for this study")   # an empty table is not shown
        del f.tables[name]
    return f.detached()


def _headline(run, mse) -> str:
    if not len(run.held_out):
        return "No reward model could be trained and evaluated."
    parts = []
    for name, r in run.held_out.iterrows():
        n = int(r["n_pairs"])
        if n:
            lo, hi = wilson_percent(r["pairwise_accuracy"], n)
            parts.append(f"the {name} ranks {100 * r['pairwise_accuracy']:.1f}% of {n} held-out pairs right "
                         f"(Wilson 95% {lo:.1f}–{hi:.1f}; chance 50)")
    text = ("; ".join(parts) or "no held-out ranked pairs") + "."
    if mse["n"] and not math.isnan(mse["mse"]):
        text += (f" The ratings RM's held-out MSE is {mse['mse']:.4f} against {mse['mse_constant']:.4f} for predicting "
                 f"the mean training rating ({'worse' if mse['diff'] > 0 else 'better'}).")
    return ("Demonstration: " if run.demo else "") + text[0].upper() + text[1:]


def _data_table(run) -> pd.DataFrame:
    (rt, rv), (kt, kv) = run.splits["ratings"], run.splits["rankings"]
    usable = lambda df: int(df["decision"].isin(["a", "b"]).sum()) if "decision" in df else 0  # noqa: E731
    return pd.DataFrame({"train": [len(rt), usable(kt)], "held-out": [len(rv), usable(kv)],
                         "left out": [run.rating_counts["rows"] - run.rating_counts["used"],
                                      len(run.rankings) - usable(run.rankings)]},
                        index=["ratings (cleaned)", "pairs with a preference (a or b)"])


def _training_table(run) -> pd.DataFrame:
    return pd.DataFrame({f"{kind} RM": {"trained": r is not None,
                                        "training examples": r["counts"]["train"]["used"] if r else 0,
                                        "optimizer steps": r["steps"] if r else 0,
                                        "seconds": round(r["seconds"]) if r and r.get("seconds") is not None else None,
                                        "note": run.notes.get(kind, "")}
                         for kind, r in run.runs.items()}).T


def _rewards_table(run) -> pd.DataFrame:
    cols = [c for c in ("ratings_reward", "rankings_reward") if c in run.scored]
    if not cols:
        return pd.DataFrame()
    g = run.scored.groupby("score")
    return g[cols].mean().assign(n=g.size(), small_n=lambda t: t["n"] < MIN_N)


def split_note(run) -> str:
    """Which split trained and held out the RMs, in one sentence (the first note)."""
    split = run.split or {}
    if split.get("kind") == "released":
        return (f"Split: {split['description']} (the paper's reward-model files, `{split.get('table', 'rm_split')}`): "
                f"the rankings RM trains on the {split['train_pairs']:,} train pairs and is evaluated on the "
                f"{split['val_pairs']:,} val pairs; the ratings RM holds out the same {len(run.val_ids):,} "
                "instruction(s) (those of the val pairs), and the ratings of every other instruction, in the "
                "train file or in neither, train it.")
    if split.get("kind") == "seeded":
        return (f"Split: {split['description']}: {len(run.val_ids):,} held-out instruction(s), the same for both "
                "RMs (no instruction on both sides).")
    return "Split: not recorded (this stage's metrics.json was written by an older sflib)."


def _notes(run, mse) -> list[str]:
    notes = [split_note(run)]
    if not run.torch_threads:
        notes.append("torch threads: not recorded (this stage's metrics.json was written by an older sflib).")
    if run.demo:
        notes.append(f"A CPU **demonstration** ({run.backbone}, {len(run.val_ids)} held-out instructions): the "
                     "metrics show the pipeline, not the paper's result; a real run needs thousands of judgments "
                     "and a larger backbone (`reward_models.backbone`, `lora: true`, on a GPU).")
    for kind, r in run.runs.items():
        if r is None:
            notes.append(f"The {kind} RM was not trained: {run.notes[kind]}.")
    if mse["n"] and not math.isnan(mse["mse"]) and mse["diff"] > 0:
        notes.append(f"The ratings RM's held-out MSE ({mse['mse']:.4f}) is **worse than predicting the mean** "
                     f"training target for every response ({mse['mse_constant']:.4f}).")
    if "ratings_reward" in run.scored and len(run.scored):
        spread = run.scored["ratings_reward"].pipe(lambda s: 1 + 6 / (1 + np.exp(-s)))
        notes.append(f"The ratings RM's rewards map to scores {spread.min():.2f}–{spread.max():.2f} over every "
                     f"rated response (the ratings span {int(run.scored['score'].min())}–"
                     f"{int(run.scored['score'].max())}).")
    from ..core import paper

    if paper.table("reward_models").empty:
        notes.append("The paper's reward-model numbers are not transcribed in `sflib/core/paper.py` (its abstract "
                     "reports no held-out accuracy).")
    if run.rating_counts.get("duplicates"):
        notes.append(f"{run.rating_counts['duplicates']} duplicate rating(s) of a response left out (first kept: the "
                     "one counting rule of notebooks 02–04, `sflib.feedback.clean`), "
                     f"{run.rating_counts.get('conflicting', 0)} of them with a different score.")
    return notes
