"""Stage 07, analysis of win rates: two policies compared (paired), result tables, per-dataset tables,
and output length (mean lengths, win rate by policy/reference length ratio)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .alignment import _as_outputs
from ..core.stats import N_BOOT, bootstrap_ci, ci_sem
from .winrate import WinRate, wilson_percent

#: policy/reference length-ratio buckets (words) for the length analysis
LENGTH_BUCKETS = (0.0, 0.5, 0.8, 1.25, 2.0, math.inf)


@dataclass
class Comparison:
    """Paired comparison of two policies' win rates (same protocol, same reference).

    ``diff`` = winrate(a) − winrate(b) on the instructions both have counted (×100), with the
    1.96·SEM and bootstrap intervals of the per-instruction differences and a paired t-test.
    """

    protocol: str
    policy_a: str
    policy_b: str
    n: int
    winrate_a: float
    winrate_b: float
    diff: float
    ci_sem: float
    ci_low: float
    ci_high: float
    p_value: float
    a_better: int
    b_better: int
    same: int
    only_a: int
    only_b: int

    def summary(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}

    def __str__(self) -> str:
        if self.n == 0:
            return (f"{self.protocol} protocol, {self.policy_a} vs {self.policy_b}: no instruction counted for both "
                    f"({self.only_a} only for {self.policy_a}, {self.only_b} only for {self.policy_b})")
        return (f"{self.protocol} protocol, {self.policy_a} − {self.policy_b}: {self.diff:+.1f} ± {self.ci_sem:.1f} "
                f"(bootstrap {self.ci_low:+.1f} to {self.ci_high:+.1f}), n={self.n}, p={self.p_value:.3g}")


def compare_policies(a: WinRate | Mapping[str, WinRate], b: WinRate | Mapping[str, WinRate], *,
                     n_boot: int = N_BOOT, seed: int = 0) -> Comparison | pd.DataFrame:
    """Paired difference of two policies' win rates against the same reference.

    With two :class:`WinRate` of the same protocol: a :class:`Comparison` on the instructions both
    counted. With two mappings protocol -> WinRate (e.g. :attr:`Evaluation.results`): a table with
    one row per protocol both have — "ratings-RM vs rankings-RM under each protocol" in one call.
    """
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)):
            raise TypeError("compare_policies: give two WinRate results or two protocol -> WinRate mappings")
        rows = [compare_policies(a[p], b[p], n_boot=n_boot, seed=seed).summary() for p in a if p in b]
        return pd.DataFrame(rows)
    if a.protocol != b.protocol:
        raise ValueError(f"compare_policies: protocols differ ({a.protocol} vs {b.protocol}); compare like with like")
    if a.reference != b.reference:
        raise ValueError(f"compare_policies: references differ ({a.reference} vs {b.reference})")
    wa = a.items.dropna(subset=["win"]).drop_duplicates("key").set_index("key")["win"]
    wb = b.items.dropna(subset=["win"]).drop_duplicates("key").set_index("key")["win"]
    common = wa.index.intersection(wb.index)
    d = (wa.loc[common] - wb.loc[common]).to_numpy(float)
    lo, hi = bootstrap_ci(d, n_boot=n_boot, seed=seed)
    p = float(stats.ttest_1samp(d, 0.0).pvalue) if len(d) > 1 and np.std(d) > 0 else float("nan")
    nan = float("nan")
    return Comparison(protocol=a.protocol, policy_a=a.policy, policy_b=b.policy, n=len(d),
                      winrate_a=100 * wa.loc[common].mean() if len(d) else nan,
                      winrate_b=100 * wb.loc[common].mean() if len(d) else nan,
                      diff=100 * d.mean() if len(d) else nan, ci_sem=100 * ci_sem(d), ci_low=100 * lo,
                      ci_high=100 * hi, p_value=p, a_better=int((d > 0).sum()), b_better=int((d < 0).sum()),
                      same=int((d == 0).sum()), only_a=int(len(wa) - len(common)), only_b=int(len(wb) - len(common)))


# ----------------------------------------------------------------------------- tables

def results_table(results: Iterable[WinRate]) -> pd.DataFrame:
    """One row per result: policy, protocol, win rate ×100, both intervals, n, W/T/L, dropped + reasons,
    and the length-controlled win rate beside the raw one (``lc_winrate``, ``lc_standard_error``)."""
    rows = []
    for r in results:
        rows.append({"policy": r.policy, "protocol": r.protocol, "reference": r.reference, "judge": r.judge,
                     "winrate": r.winrate, "ci_sem": r.ci_sem, "ci_low": r.ci_low, "ci_high": r.ci_high,
                     "wilson_low": r.wilson_low, "wilson_high": r.wilson_high,
                     "winrate_excl_ties": r.winrate_excl_ties, "excl_low": r.excl_ties_interval[0],
                     "excl_high": r.excl_ties_interval[1], "n": r.n, "n_items": r.n_items, "wins": r.wins, "ties": r.ties,
                     "losses": r.losses,
                     "dropped": r.n_dropped,
                     "dropped_reasons": "; ".join(f"{k}: {v}" for k, v in r.dropped.items()),
                     "ignored": "; ".join(f"{k}: {v}" for k, v in r.ignored.items()),
                     "lc_winrate": r.lc_winrate, "lc_standard_error": r.lc_standard_error,
                     "lc_identifiable": r.lc_identifiable,
                     "lc_glm": r.lc.glm if r.lc is not None else "", "verdicts": r.verdicts})
    return pd.DataFrame(rows)


def by_dataset_table(results: Iterable[WinRate]) -> pd.DataFrame:
    """Per-dataset win rates of every result, long format (policy, protocol, dataset, ...)."""
    frames = []
    for r in results:
        if len(r.by_dataset):
            frames.append(r.by_dataset.assign(policy=r.policy, protocol=r.protocol))
    if not frames:
        return pd.DataFrame(columns=["policy", "protocol", "dataset", "n", "winrate", "ci_sem"])
    out = pd.concat(frames, ignore_index=True)
    return out[["policy", "protocol"] + [c for c in out.columns if c not in ("policy", "protocol")]]


# ----------------------------------------------------------------------------- length

def _words(text: object) -> float:
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return float("nan")
    return float(len(str(text).split()))


def mean_lengths(outputs: Mapping[str, pd.DataFrame | os.PathLike | str]) -> pd.DataFrame:
    """Output length (words and characters) per model_outputs file: n, mean, median."""
    rows = []
    for name, o in outputs.items():
        df, _ = _as_outputs(o)
        w = np.array([_words(t) for t in df["output"]])
        rows.append({"generator": name, "n": len(df), "mean_words": float(w.mean()) if len(w) else float("nan"),
                     "median_words": float(np.median(w)) if len(w) else float("nan"),
                     "mean_chars": float(df["output"].str.len().mean()) if len(df) else float("nan")})
    return pd.DataFrame(rows)


def _bucket_labels(edges: Sequence[float]) -> list[str]:
    labels = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        if lo == 0:
            labels.append(f"< {hi:g}×")
        elif math.isinf(hi):
            labels.append(f"≥ {lo:g}×")
        else:
            labels.append(f"{lo:g}–{hi:g}×")
    return labels


def length_analysis(results: WinRate | Iterable[WinRate], *, edges: Sequence[float] = LENGTH_BUCKETS) -> pd.DataFrame:
    """Win rate within buckets of the policy/reference output-length ratio (words, +1 smoothed).

    Judges favour longer outputs; the bucket around 1× (0.8–1.25× by default) is the
    length-matched comparison. Needs ``policy_output``/``reference_output`` in the result's items
    (results computed with an :class:`Alignment` have them). Columns: policy, protocol, bucket,
    n, winrate, ci_sem, wilson_low, wilson_high, mean_policy_words, mean_reference_words.
    """
    if isinstance(results, WinRate):
        results = [results]
    labels = _bucket_labels(edges)
    rows = []
    for r in results:
        it = r.items.dropna(subset=["win"])
        if "policy_output" not in it or "reference_output" not in it:
            continue
        pw = np.array([_words(t) for t in it["policy_output"]])
        rw = np.array([_words(t) for t in it["reference_output"]])
        ratio = (pw + 1) / (rw + 1)
        bucket = pd.cut(ratio, bins=list(edges), labels=labels, right=False)
        win = it["win"].to_numpy(float)
        for lab in labels:
            m = np.asarray(bucket == lab)
            w = win[m]
            rows.append({"policy": r.policy, "protocol": r.protocol, "bucket": lab, "n": int(m.sum()),
                         "winrate": 100 * w.mean() if len(w) else float("nan"), "ci_sem": 100 * ci_sem(w),
                         **dict(zip(("wilson_low", "wilson_high"), wilson_percent(w.sum(), len(w)))),
                         "mean_policy_words": float(pw[m].mean()) if m.any() else float("nan"),
                         "mean_reference_words": float(rw[m].mean()) if m.any() else float("nan")})
    return pd.DataFrame(rows, columns=["policy", "protocol", "bucket", "n", "winrate", "ci_sem", "wilson_low",
                                       "wilson_high", "mean_policy_words", "mean_reference_words"])

