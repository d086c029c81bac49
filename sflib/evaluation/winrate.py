"""Stage 07, win rates: a policy against a reference under the rating and the ranking protocol.

- **Rating protocol**: the same judge rates the policy's and the reference's output for each
  instruction (1–7); win = 1 if the policy's score is higher, 0.5 if equal, 0 otherwise.
- **Ranking protocol**: one pairwise judgment with the reference as (a) and the policy as (b),
  asked in both orders (stage 03); win = 1 for ``b``, 0.5 for ``equal``, 0 for ``a``.
- With ``verdicts="soft"`` (:mod:`sflib.feedback.soft_verdicts`): the rating-protocol win is the sign of
  expected_score(policy) − expected_score(reference) (1 / 0.5 / 0) and the ranking-protocol win is
  P(policy better) = 1 − p_a; a judgment without its soft value uses its hard one (counted).

Every :class:`WinRate` has the evaluation set it was computed on (``n_items`` instructions), ``n`` of
them counted, and ``dropped`` = {reason: count} for the rest, so that ``n + sum(dropped.values()) ==
n_items``; rows outside the evaluation set (duplicates, instructions the reference lacks, datasets
left out) are in ``ignored``. Intervals (:mod:`sflib.core.stats`): ``ci_sem`` = 1.96·SEM (the paper's,
half-width, ×100; it collapses to 0 at 0% and 100%), a percentile bootstrap over instructions
(``ci_low``, ``ci_high``) and the **Wilson** score interval (``wilson_low``, ``wilson_high``; never zero
width), taking the win values' sum (ties count one half) as the successes (:func:`wilson_percent`). Beside
the win rate with ties as 0.5: the win rate **excluding ties**, wins / (wins + losses), with its Wilson
interval (``winrate_excl_ties``, ``excl_low``, ``excl_high``). Each result also carries AlpacaEval 2's
length-controlled win rate (``lc_winrate``, :mod:`sflib.evaluation.lc_winrate`); NaN when the fit is not
identifiable (every weight 0, so it would print 50 whatever the data).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from . import lc_winrate as lcw
from ..feedback import soft_verdicts
from .alignment import Alignment, _add, _keys, _norm_text
from ..core.stats import N_BOOT, bootstrap_ci, ci_sem

PROTOCOLS = ("rating", "ranking")
#: win value of each ranking decision: the reference is (a), the policy is (b)
DECISION_WIN = {"b": 1.0, "equal": 0.5, "a": 0.0}


def wilson_percent(successes: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ×100 for ``successes`` of ``n`` (:func:`statsmodels.stats.proportion.proportion_confint`,
    which takes a fractional count: a tie counts one half); NaN, NaN when n = 0."""
    from statsmodels.stats.proportion import proportion_confint

    if not n:
        return float("nan"), float("nan")
    low, high = proportion_confint(float(successes), int(n), alpha=1 - level, method="wilson")
    return 100 * float(low), 100 * float(high)


def excluding_ties(wins: int, losses: int) -> tuple[float, float, float]:
    """Win rate ×100 without the ties, wins / (wins + losses), and its Wilson interval (NaN when all tie)."""
    k = wins + losses
    return (100 * wins / k if k else float("nan"), *wilson_percent(wins, k))


def _count(values: Iterable[float]) -> tuple[int, int, int]:
    """Wins (> 0.5: the policy better), ties (0.5) and losses (< 0.5)."""
    v = np.asarray(list(values), dtype=float)
    return int((v > 0.5).sum()), int((v == 0.5).sum()), int((v < 0.5).sum())


@dataclass
class WinRate:
    """The win rate of ``policy`` against ``reference`` under one protocol.

    ``winrate``, ``ci_sem`` (half-width), ``ci_low``/``ci_high`` (bootstrap) are ×100.
    ``items`` has one row per instruction of the evaluation set: ``key, instruction, dataset,
    win`` (NaN when dropped), ``reason`` (why it was dropped, '' when counted) and the judgments
    and texts that were available (``policy_score``/``reference_score`` or ``decision``/
    ``verdict_12``/``verdict_21``; ``policy_output``/``reference_output``).
    """

    protocol: str
    policy: str
    reference: str
    n: int
    winrate: float
    ci_sem: float
    ci_low: float
    ci_high: float
    wins: int
    ties: int
    losses: int
    n_items: int
    dropped: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)
    judge: str = ""
    items: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    by_dataset: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    verdicts: str = "hard"
    notes: list[str] = field(default_factory=list)
    lc: lcw.LCResult | None = field(default=None, repr=False)
    wilson_low: float = float("nan")
    wilson_high: float = float("nan")

    def __post_init__(self):
        if math.isnan(self.wilson_low) and self.n:
            self.wilson_low, self.wilson_high = wilson_percent(self.winrate / 100 * self.n, self.n)

    @property
    def winrate_excl_ties(self) -> float:
        """wins / (wins + losses) ×100: the win rate on the instructions that were not ties."""
        return excluding_ties(self.wins, self.losses)[0]

    @property
    def excl_ties_interval(self) -> tuple[float, float]:
        """Wilson interval ×100 of :attr:`winrate_excl_ties`."""
        return excluding_ties(self.wins, self.losses)[1:]

    @property
    def lc_identifiable(self) -> bool:
        return self.lc is not None and self.lc.identifiable

    @property
    def lc_winrate(self) -> float:
        """AlpacaEval 2's length-controlled win rate ×100 (:mod:`sflib.evaluation.lc_winrate`); NaN when not
        computable or not identifiable (a fit whose every weight is 0 predicts 50 for any data)."""
        return self.lc.lc_winrate if self.lc_identifiable else float("nan")

    @property
    def lc_standard_error(self) -> float:
        return self.lc.lc_standard_error if self.lc_identifiable else float("nan")

    def with_lc(self, lc: lcw.LCResult) -> "WinRate":
        """The same result with another length-controlled fit (e.g. with the instruction-difficulty term)."""
        return dataclasses.replace(self, lc=lc)

    @property
    def ci_bootstrap(self) -> tuple[float, float]:
        return self.ci_low, self.ci_high

    @property
    def n_dropped(self) -> int:
        return int(sum(self.dropped.values()))

    def summary(self) -> dict[str, Any]:
        """A JSON-serialisable summary (no per-item rows)."""
        out = {k: getattr(self, k) for k in ("protocol", "policy", "reference", "judge", "n", "winrate", "ci_sem",
                                              "ci_low", "ci_high", "wilson_low", "wilson_high", "winrate_excl_ties",
                                              "wins", "ties", "losses", "n_items")}
        out = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}
        out["n_dropped"] = self.n_dropped
        out["dropped"] = dict(self.dropped)
        out["ignored"] = dict(self.ignored)
        out["by_dataset"] = json.loads(self.by_dataset.to_json(orient="records")) if len(self.by_dataset) else []
        lc = self.lc.summary() if self.lc is not None else {}
        out["lc_winrate"] = lc.get("lc_winrate") if self.lc_identifiable else None
        out["lc_standard_error"] = lc.get("lc_standard_error") if self.lc_identifiable else None
        out["lc"] = lc
        out["verdicts"] = self.verdicts
        out["notes"] = list(self.notes)
        return out

    def __str__(self) -> str:
        head = f"{self.protocol} protocol, {self.policy} vs {self.reference}: "
        if self.n == 0:
            body = f"no judgments to count (n=0 of {self.n_items})"
        else:
            body = (f"{self.winrate:.1f} ± {self.ci_sem:.1f} (Wilson {self.wilson_low:.1f}–{self.wilson_high:.1f}, "
                    f"bootstrap {self.ci_low:.1f}–{self.ci_high:.1f}), "
                    f"n={self.n} of {self.n_items}, W/T/L {self.wins}/{self.ties}/{self.losses}")
            if not math.isnan(self.lc_winrate):
                body += f", length-controlled {self.lc_winrate:.1f}"
            elif self.lc is not None and self.lc.n >= lcw.MIN_N and not self.lc.identifiable:
                body += ", length-controlled: not identifiable"
            if self.verdicts != "hard":
                body += f" ({self.verdicts} verdicts)"
        if self.dropped:
            body += "; dropped " + ", ".join(f"{k}: {v}" for k, v in self.dropped.items())
        if self.ignored:
            body += "; ignored " + ", ".join(f"{k}: {v}" for k, v in self.ignored.items())
        return head + body


def _by_dataset(items: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    rows = []
    if "dataset" not in items or not len(items):
        return pd.DataFrame(columns=["dataset", "n", "winrate", "ci_sem", "ci_low", "ci_high", "wilson_low", "wilson_high",
                                     "wins", "ties", "losses", "dropped"])
    for ds, g in items.groupby(items["dataset"].fillna("").astype(str), sort=True):
        w = g["win"].dropna().to_numpy(float)
        lo, hi = bootstrap_ci(w, n_boot=n_boot, seed=seed)
        wins, ties, losses = _count(w)
        wl, wh = wilson_percent(w.sum(), len(w))
        rows.append({"dataset": ds or "(none)", "n": len(w), "winrate": 100 * w.mean() if len(w) else float("nan"),
                     "ci_sem": 100 * ci_sem(w), "ci_low": 100 * lo, "ci_high": 100 * hi,
                     "wilson_low": wl, "wilson_high": wh,
                     "wins": wins, "ties": ties, "losses": losses, "dropped": int(g["win"].isna().sum())})
    return pd.DataFrame(rows)


def _result(protocol: str, items: pd.DataFrame, *, policy: str, reference: str, judge: str,
            ignored: dict[str, int], n_boot: int, seed: int, verdicts: str = "hard",
            notes: Sequence[str] = ()) -> WinRate:
    counted = items["win"].dropna().to_numpy(float)
    dropped: dict[str, int] = {}
    for reason in items.loc[items["win"].isna(), "reason"]:
        _add(dropped, reason)
    lo, hi = bootstrap_ci(counted, n_boot=n_boot, seed=seed)
    wins, ties, losses = _count(counted)
    return WinRate(protocol=protocol, policy=policy, reference=reference, judge=judge, n=len(counted),
                   winrate=100 * counted.mean() if len(counted) else float("nan"),
                   ci_sem=100 * ci_sem(counted), ci_low=100 * lo, ci_high=100 * hi,
                   wins=wins, ties=ties, losses=losses, n_items=len(items), dropped=dropped,
                   ignored=dict(ignored), items=items.reset_index(drop=True),
                   by_dataset=_by_dataset(items, n_boot, seed), verdicts=verdicts, notes=list(notes),
                   lc=lcw.lc_for_items(items))


def _items_frame(items: Alignment | pd.DataFrame | None, judgments: list[pd.DataFrame]) -> tuple[pd.DataFrame, dict]:
    """The evaluation set: an alignment, a frame with ``instruction`` (+ ``dataset``...), or, when
    None, every instruction that has any judgment."""
    ignored: dict[str, int] = {}
    if isinstance(items, Alignment):
        ignored.update(items.ignored)
        frame = items.items.copy()
    elif items is not None:
        frame = items.copy()
        frame["key"] = _keys(frame)
        _add(ignored, "duplicate instruction in the evaluation set (first kept)", int(frame["key"].duplicated().sum()))
        frame = frame.drop_duplicates("key", keep="first")
        if "reason" not in frame:
            frame["reason"] = ""
    else:
        keys, instr = [], {}
        for j in judgments:
            for k, i in zip(j["key"], j["instruction"]):
                if k not in instr:
                    instr[k] = i
                    keys.append(k)
        ds = {}
        for j in judgments:
            if "dataset" in j:
                for k, d in zip(j["key"], j["dataset"]):
                    ds.setdefault(k, d)
        frame = pd.DataFrame({"key": keys, "instruction": [instr[k] for k in keys],
                              "dataset": [ds.get(k, "") for k in keys], "reason": ""})
    if "dataset" not in frame:
        frame["dataset"] = ""
    frame["reason"] = frame["reason"].fillna("").astype(str)
    return frame.reset_index(drop=True), ignored


def _judgment_frame(df: pd.DataFrame | pd.Series, value: str, who: str, ignored: dict) -> pd.DataFrame:
    """Normalise judgments to a frame with ``key`` and ``value``; duplicates: first kept, counted."""
    if isinstance(df, pd.Series):
        df = pd.DataFrame({"instruction": df.index.astype(str), value: df.to_numpy()})
    df = df.copy()
    if "instruction" not in df:
        raise ValueError(f"{who} judgments have no 'instruction' column (columns: {', '.join(map(str, df.columns))})")
    if value not in df:
        raise ValueError(f"{who} judgments have no '{value}' column (columns: {', '.join(map(str, df.columns))})")
    df["key"] = _keys(df)
    _add(ignored, f"duplicate {who} judgment of an instruction (first kept)", int(df["key"].duplicated().sum()))
    return df.drop_duplicates("key", keep="first").set_index("key")


def _invalid_reason(row: pd.Series | None, who: str) -> str:
    """'<who> judgment failed' (no answer: API error, not recorded ...) or '... invalid' (unparsable)."""
    status = row["status"] if row is not None and "status" in row else None
    if isinstance(status, str) and status in ("failed", "invalid"):
        return f"{who} judgment {status}"
    return f"{who} judgment invalid"


def _text_matches(judged: object, expected: object) -> bool:
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        return True
    if judged is None or (isinstance(judged, float) and math.isnan(judged)):
        return True
    return _norm_text(judged) == _norm_text(expected)


def winrate_from_ratings(policy_scores: pd.DataFrame | pd.Series, reference_scores: pd.DataFrame | pd.Series, *,
                         items: Alignment | pd.DataFrame | None = None, policy: str | None = None,
                         reference: str | None = None, judge: str = "", n_boot: int = N_BOOT,
                         seed: int = 0, verdicts: str = "hard") -> WinRate:
    """Rating-protocol win rate from two frames of ratings.

    ``policy_scores`` / ``reference_scores``: frames with ``instruction`` and ``score`` (NaN =
    invalid; ``input``, ``response``, ``status``/``error``, ``dataset`` optional), or Series of
    scores indexed by instruction. The first judgment per instruction counts (others are
    counted in ``ignored``). Per instruction: win = 1 if the policy's score is higher, 0.5 if
    equal, 0 if lower. ``items`` is the evaluation set (an :class:`Alignment` or a frame with
    ``instruction``); instructions without both valid scores are dropped with the reason, and a
    judgment whose ``response`` is not the output being evaluated is dropped too. Without
    ``items`` the evaluation set is every instruction that has either judgment.
    ``verdicts="soft"`` compares the ``expected_score`` columns instead (hard score where missing).
    """
    ignored: dict[str, int] = {}
    policy_scores, reference_scores, verdicts, notes = _soft_scores(policy_scores, reference_scores, verdicts)
    pol = _judgment_frame(policy_scores, "score", "policy", ignored)
    ref = _judgment_frame(reference_scores, "score", "reference", ignored)
    frame, ign = _items_frame(items, [pol.reset_index(), ref.reset_index()])
    for k, v in ign.items():
        _add(ignored, k, v)
    if isinstance(items, Alignment):
        policy, reference = policy or items.policy, reference or items.reference
    wins, reasons, ps, rs = [], [], [], []
    for rec in frame.itertuples(index=False):
        p = pol.loc[rec.key] if rec.key in pol.index else None
        r = ref.loc[rec.key] if rec.key in ref.index else None
        ps.append(float(p["score"]) if p is not None and pd.notna(p["score"]) else float("nan"))
        rs.append(float(r["score"]) if r is not None and pd.notna(r["score"]) else float("nan"))
        reason = rec.reason
        if not reason:
            p_problem = "no policy judgment" if p is None else _invalid_reason(p, "policy") if math.isnan(ps[-1]) else ""
            r_problem = ("no reference judgment" if r is None else _invalid_reason(r, "reference")
                         if math.isnan(rs[-1]) else "")
            if p_problem or r_problem:
                reason = " and ".join(x for x in (p_problem, r_problem) if x)
            elif "response" in pol.columns and not _text_matches(p["response"], getattr(rec, "policy_output", None)):
                reason = "policy judgment is of a different output"
            elif "response" in ref.columns and not _text_matches(r["response"], getattr(rec, "reference_output", None)):
                reason = "reference judgment is of a different output"
        reasons.append(reason)
        wins.append(float("nan") if reason else (1.0 if ps[-1] > rs[-1] else 0.5 if ps[-1] == rs[-1] else 0.0))
    frame["policy_score"], frame["reference_score"] = ps, rs
    frame["win"], frame["reason"] = wins, reasons
    return _result("rating", frame, policy=policy or "policy", reference=reference or "reference", judge=judge,
                   ignored=ignored, n_boot=n_boot, seed=seed, verdicts=verdicts, notes=notes)


def _soft_scores(pol, ref, verdicts: str):
    """The two ratings frames with ``score`` = the soft score where asked for and available."""
    soft_verdicts.check_verdicts(verdicts)
    if verdicts == "hard":
        return pol, ref, "hard", []
    if not (isinstance(pol, pd.DataFrame) and isinstance(ref, pd.DataFrame)):
        return pol, ref, "hard", ["soft verdicts asked for, but the scores are plain Series: hard verdicts used"]
    pol2, pi = soft_verdicts.soft_ratings(pol, "policy ratings")
    ref2, ri = soft_verdicts.soft_ratings(ref, "reference ratings")
    if pi.verdicts != ri.verdicts:  # never mix an expected score with a hard one across the two sides
        return pol, ref, "hard", [n for n in (pi.note, ri.note) if n] + ["hard verdicts used for both sides"]
    return pol2, ref2, pi.verdicts, [n for n in (pi.note, ri.note) if n]


def winrate_from_rankings(decisions: pd.DataFrame | Sequence[str], *, items: Alignment | pd.DataFrame | None = None,
                          policy: str | None = None, reference: str | None = None, judge: str = "",
                          n_boot: int = N_BOOT, seed: int = 0, verdicts: str = "hard") -> WinRate:
    """Ranking-protocol win rate from pairwise decisions with the reference as (a), the policy as (b).

    ``decisions``: a frame with ``instruction`` and ``decision`` in ``a``/``b``/``equal`` (NaN or
    anything else = invalid; ``verdict_12``/``verdict_21``, ``status``, ``response1`` = the
    reference's output, ``response2`` = the policy's, ``dataset`` optional), or a plain sequence of
    decisions (one per item). Win = 1 for ``b``, 0.5 for ``equal``, 0 for ``a``; the first
    judgment per instruction counts. ``items`` as in :func:`winrate_from_ratings`.
    ``verdicts="soft"``: win = 1 − ``p_a`` (P(policy better)); the hard decision where p_a is missing.
    """
    ignored: dict[str, int] = {}
    if not isinstance(decisions, pd.DataFrame):
        decisions = list(decisions)
        decisions = pd.DataFrame({"instruction": [f"item {i + 1}" for i in range(len(decisions))],
                                  "decision": decisions})
    notes: list[str] = []
    if soft_verdicts.check_verdicts(verdicts) == "soft":
        p_a, info = soft_verdicts.soft_p_a(decisions, "rankings")
        verdicts, notes = info.verdicts, [info.note] if info.note else []
        if p_a is not None:
            decisions = decisions.assign(p_a=p_a)
    dec = _judgment_frame(decisions, "decision", "ranking", ignored)
    soft = verdicts == "soft"
    frame, ign = _items_frame(items, [dec.reset_index()])
    for k, v in ign.items():
        _add(ignored, k, v)
    if isinstance(items, Alignment):
        policy, reference = policy or items.policy, reference or items.reference
    extra = [c for c in ("verdict_12", "verdict_21", "p_a") if c in dec.columns]
    wins, reasons, ds, ex = [], [], [], {c: [] for c in extra}
    for rec in frame.itertuples(index=False):
        d = dec.loc[rec.key] if rec.key in dec.index else None
        value = d["decision"] if d is not None else None
        value = value.strip().lower() if isinstance(value, str) else None
        ds.append(value)
        p_a = float(d["p_a"]) if soft and d is not None and pd.notna(d["p_a"]) else float("nan")
        for c in extra:
            ex[c].append(d[c] if d is not None else None)
        reason = rec.reason
        if not reason:
            if d is None:
                reason = "no ranking judgment"
            elif value not in DECISION_WIN and math.isnan(p_a):
                reason = _invalid_reason(d, "ranking")
            elif "response1" in dec.columns and not _text_matches(d["response1"], getattr(rec, "reference_output", None)):
                reason = "ranking judgment's (a) is not the reference output"
            elif "response2" in dec.columns and not _text_matches(d["response2"], getattr(rec, "policy_output", None)):
                reason = "ranking judgment's (b) is not the policy output"
        reasons.append(reason)
        wins.append(float("nan") if reason else (1.0 - p_a) if not math.isnan(p_a) else DECISION_WIN[value])
    frame["decision"] = ds
    for c in extra:
        frame[c] = ex[c]
    frame["win"], frame["reason"] = wins, reasons
    return _result("ranking", frame, policy=policy or "policy", reference=reference or "reference", judge=judge,
                   ignored=ignored, n_boot=n_boot, seed=seed, verdicts=verdicts, notes=notes)


def no_judgments(items: Alignment, protocol: str, *, reason: str = "no recorded judgment",
                 policy: str | None = None, reference: str | None = None, judge: str = "") -> WinRate:
    """A result with nothing counted: every usable instruction dropped for ``reason``."""
    frame = items.items.copy()
    frame["reason"] = [r or reason for r in frame["reason"]]
    frame["win"] = float("nan")
    return _result(protocol, frame, policy=policy or items.policy, reference=reference or items.reference,
                   judge=judge, ignored=items.ignored, n_boot=0, seed=0)

