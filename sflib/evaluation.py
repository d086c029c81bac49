"""Stage 8 — win rate of a policy against a reference under the rating and the ranking protocol.

- **Rating protocol**: the same judge rates the policy's and the reference's output for each
  instruction (1–7); win = 1 if the policy's score is higher, 0.5 if equal, 0 otherwise.
- **Ranking protocol**: one pairwise judgment with the reference as (a) and the policy as (b),
  asked in both orders (stage 4); win = 1 for ``b``, 0.5 for ``equal``, 0 for ``a``.

All the arithmetic works on plain frames of judgments (scores, decisions), however they were
acquired: :func:`winrate_from_ratings`, :func:`winrate_from_rankings`, :func:`compare_policies`,
:func:`length_analysis`. :func:`align_outputs` matches two AlpacaEval ``model_outputs`` files by
instruction; :func:`evaluate` is the thin judge-driven layer that calls ``sflib.ratings.rate`` and
``sflib.rankings.rank`` (cached, resumable and cost-accounted through their store);
:func:`winrates_from_recorded` computes the win rates from recorded feedback files offline; and
:func:`original_winrate_from_ratings` / :func:`original_winrate_from_rankings` reimplement the
rules of the original ``calc_win_rate_from_*_eval.py`` scripts for comparison.

Nothing is dropped silently. Every :class:`WinRate` has the evaluation set it was computed on
(``n_items`` instructions), ``n`` of them counted, and ``dropped`` = {reason: count} for the rest,
so that ``n + sum(dropped.values()) == n_items``; rows that were not part of the evaluation set
(duplicates, instructions the reference lacks, datasets left out) are in ``ignored``.
Intervals: ``ci_sem`` = 1.96·SEM (the paper's, half-width, ×100) and a percentile bootstrap over
instructions (``ci_low``, ``ci_high``; the policy's and the reference's judgments of an
instruction are resampled together).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from . import data as sfdata
from .paths import data_dir

PROTOCOLS = ("rating", "ranking")
#: the AlpacaEval subsets the paper evaluated on (553 instructions; ``selfinstruct`` left out)
PAPER_DATASETS = ("helpful_base", "koala", "oasst", "vicuna")
#: win value of each ranking decision: the reference is (a), the policy is (b)
DECISION_WIN = {"b": 1.0, "equal": 0.5, "a": 0.0}
#: policy/reference length-ratio buckets (words) for the length analysis
LENGTH_BUCKETS = (0.0, 0.5, 0.8, 1.25, 2.0, math.inf)
N_BOOT = 2000


def vendored_paths() -> dict[str, Path]:
    """The paper's evaluation files vendored under ``data/original/inference_model_outputs``."""
    d = data_dir() / "original" / "inference_model_outputs"
    return {
        "reference": d / "davinci003.json",
        "ratings_rm": d / "ratings_alpaca.json",
        "rankings_rm": d / "rankings_alpaca.json",
        "reference_ratings": d / "feedback_ratings_davinci_for_llm_eval.csv",
        "ratings_rm_ratings": d / "feedback_ratings_ratings_for_llm_eval.csv",
        "ratings_rm_rankings": d / "feedback_rankings_davincivsratings_for_llm_eval.csv",
    }


# ----------------------------------------------------------------------------- keys & statistics

def _norm_text(text: object) -> str:
    """Text compared for identity: CRLF -> LF, surrounding whitespace removed (the original CSVs
    were written with CRLF line ends on some rows)."""
    return str(text).replace("\r\n", "\n").replace("\r", "\n").strip()


def instruction_key(instruction: object, input: object = "") -> str:
    """The key outputs and judgments are matched on: instruction (+ input when there is one)."""
    return sfdata.make_id(_norm_text(instruction), sfdata.clean_input(input))


def _keys(df: pd.DataFrame) -> list[str]:
    inputs = df["input"] if "input" in df else [""] * len(df)
    return [instruction_key(i, x) for i, x in zip(df["instruction"], inputs)]


def ci_sem(values: Sequence[float]) -> float:
    """Half-width of the paper's 95% interval, 1.96·SEM (sample SD, ddof=1); NaN below 2 values."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float("nan")
    return float(1.96 * stats.sem(v))


def bootstrap_ci(values: Sequence[float], *, n_boot: int = N_BOOT, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling items); NaN below 2 values."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float("nan"), float("nan")
    if np.all(v == v[0]):
        return float(v[0]), float(v[0])
    kwargs = dict(n_resamples=n_boot, confidence_level=level, method="percentile", vectorized=True)
    try:
        res = stats.bootstrap((v,), np.mean, rng=np.random.default_rng(seed), **kwargs)
    except TypeError:  # scipy < 1.15 names the generator random_state
        res = stats.bootstrap((v,), np.mean, random_state=np.random.default_rng(seed), **kwargs)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _count(values: Iterable[float]) -> tuple[int, int, int]:
    v = np.asarray(list(values), dtype=float)
    return int((v == 1).sum()), int((v == 0.5).sum()), int((v == 0).sum())


def _add(counts: dict[str, int], reason: str, k: int = 1) -> None:
    if k:
        counts[reason] = counts.get(reason, 0) + int(k)


# ----------------------------------------------------------------------------- results

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

    @property
    def ci_bootstrap(self) -> tuple[float, float]:
        return self.ci_low, self.ci_high

    @property
    def n_dropped(self) -> int:
        return int(sum(self.dropped.values()))

    def summary(self) -> dict[str, Any]:
        """A JSON-serialisable summary (no per-item rows)."""
        out = {k: getattr(self, k) for k in ("protocol", "policy", "reference", "judge", "n", "winrate", "ci_sem",
                                              "ci_low", "ci_high", "wins", "ties", "losses", "n_items")}
        out = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}
        out["n_dropped"] = self.n_dropped
        out["dropped"] = dict(self.dropped)
        out["ignored"] = dict(self.ignored)
        out["by_dataset"] = json.loads(self.by_dataset.to_json(orient="records")) if len(self.by_dataset) else []
        return out

    def __str__(self) -> str:
        head = f"{self.protocol} protocol, {self.policy} vs {self.reference}: "
        if self.n == 0:
            body = f"no judgments to count (n=0 of {self.n_items})"
        else:
            body = (f"{self.winrate:.1f} ± {self.ci_sem:.1f} (bootstrap {self.ci_low:.1f}–{self.ci_high:.1f}), "
                    f"n={self.n} of {self.n_items}, W/T/L {self.wins}/{self.ties}/{self.losses}")
        if self.dropped:
            body += "; dropped " + ", ".join(f"{k}: {v}" for k, v in self.dropped.items())
        if self.ignored:
            body += "; ignored " + ", ".join(f"{k}: {v}" for k, v in self.ignored.items())
        return head + body


def _by_dataset(items: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    rows = []
    if "dataset" not in items or not len(items):
        return pd.DataFrame(columns=["dataset", "n", "winrate", "ci_sem", "ci_low", "ci_high",
                                     "wins", "ties", "losses", "dropped"])
    for ds, g in items.groupby(items["dataset"].fillna("").astype(str), sort=True):
        w = g["win"].dropna().to_numpy(float)
        lo, hi = bootstrap_ci(w, n_boot=n_boot, seed=seed)
        wins, ties, losses = _count(w)
        rows.append({"dataset": ds or "(none)", "n": len(w), "winrate": 100 * w.mean() if len(w) else float("nan"),
                     "ci_sem": 100 * ci_sem(w), "ci_low": 100 * lo, "ci_high": 100 * hi,
                     "wins": wins, "ties": ties, "losses": losses, "dropped": int(g["win"].isna().sum())})
    return pd.DataFrame(rows)


def _result(protocol: str, items: pd.DataFrame, *, policy: str, reference: str, judge: str,
            ignored: dict[str, int], n_boot: int, seed: int) -> WinRate:
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
                   by_dataset=_by_dataset(items, n_boot, seed))


# ----------------------------------------------------------------------------- alignment

@dataclass
class Alignment:
    """Policy and reference outputs matched by instruction.

    ``items``: one row per instruction of the evaluation set (the reference's instructions, in the
    selected datasets) with ``key, instruction, input, dataset, reference_output, policy_output,
    reason`` — ``reason`` is '' when both outputs are usable, else why the instruction cannot be
    evaluated (``dropped`` counts these). ``ignored`` counts rows outside the evaluation set.
    """

    items: pd.DataFrame
    dropped: dict[str, int]
    ignored: dict[str, int]
    policy: str = "policy"
    reference: str = "reference"

    @property
    def pairs(self) -> pd.DataFrame:
        """The instructions with both outputs usable."""
        return self.items[self.items["reason"] == ""].reset_index(drop=True)

    def report(self) -> pd.DataFrame:
        """Every count behind the evaluation set, as a table (what, count)."""
        rows = [("reference instructions in the evaluation set", len(self.items)),
                ("usable (both outputs present and non-empty)", len(self.pairs))]
        rows += [(f"dropped: {k}", v) for k, v in self.dropped.items()]
        rows += [(f"ignored: {k}", v) for k, v in self.ignored.items()]
        return pd.DataFrame(rows, columns=["what", "count"])


def _as_outputs(outputs: pd.DataFrame | os.PathLike | str) -> tuple[pd.DataFrame, str]:
    if isinstance(outputs, (str, os.PathLike)):
        df = sfdata.read_model_outputs(outputs)
        name = Path(outputs).stem
    else:
        df = outputs.copy()
        for col in ("instruction", "output"):
            if col not in df:
                raise ValueError(f"model outputs frame has no '{col}' column (columns: {', '.join(map(str, df.columns))})")
        name = ""
    if "generator" in df and len(df) and str(df["generator"].iloc[0]):
        name = str(df["generator"].iloc[0])
    for col in ("generator", "dataset"):
        if col not in df:
            df[col] = ""
    df["input"] = [sfdata.clean_input(x) for x in df["input"]] if "input" in df else ""
    df["output"] = ["" if (x is None or (isinstance(x, float) and math.isnan(x))) else str(x) for x in df["output"]]
    df["key"] = _keys(df)
    return df.reset_index(drop=True), name


def align_outputs(policy_outputs: pd.DataFrame | os.PathLike | str,
                  reference_outputs: pd.DataFrame | os.PathLike | str, *,
                  datasets: Sequence[str] | None = None, policy: str | None = None,
                  reference: str | None = None) -> Alignment:
    """Match a policy's ``model_outputs`` with the reference's by instruction (+ input).

    The evaluation set is the reference's instructions (those in ``datasets`` when given; the
    paper's are :data:`PAPER_DATASETS`). Counted, never silently dropped:

    - dropped (instructions of the evaluation set that cannot be evaluated): no policy output,
      empty policy output, empty reference output;
    - ignored (rows outside the evaluation set): duplicate instructions in either file (the first
      is kept), policy outputs whose instruction the reference lacks, reference instructions
      outside ``datasets``.

    Arguments are AlpacaEval JSON paths or frames with ``instruction, output`` (``dataset``,
    ``generator``, ``input`` optional). ``policy``/``reference`` name the two (default: the
    ``generator`` field, else the file name).
    """
    pol, pol_name = _as_outputs(policy_outputs)
    ref, ref_name = _as_outputs(reference_outputs)
    policy = policy or pol_name or "policy"
    reference = reference or ref_name or "reference"
    ignored: dict[str, int] = {}
    _add(ignored, "duplicate instruction in reference outputs (first kept)", int(ref["key"].duplicated().sum()))
    _add(ignored, "duplicate instruction in policy outputs (first kept)", int(pol["key"].duplicated().sum()))
    ref = ref.drop_duplicates("key", keep="first")
    pol = pol.drop_duplicates("key", keep="first")
    all_ref_keys = set(ref["key"])
    if datasets is not None:
        inside = ref["dataset"].isin(list(datasets))
        for ds, k in ref.loc[~inside, "dataset"].value_counts().items():
            _add(ignored, f"reference instruction outside the selected datasets ({ds or 'no dataset'})", int(k))
        _add(ignored, "policy output for a reference instruction outside the selected datasets",
             int(pol["key"].isin(set(ref.loc[~inside, "key"])).sum()))
        ref = ref[inside]
    _add(ignored, "policy output for an instruction the reference lacks", int((~pol["key"].isin(all_ref_keys)).sum()))
    pol_by_key = pol.set_index("key")
    items = pd.DataFrame({
        "key": ref["key"].to_numpy(), "instruction": ref["instruction"].to_numpy(),
        "input": ref["input"].to_numpy(),
        "dataset": [d or pol_by_key["dataset"].get(k, "") for d, k in zip(ref["dataset"], ref["key"])],
        "reference_output": ref["output"].to_numpy(),
        "policy_output": pd.Series([pol_by_key["output"].get(k) for k in ref["key"]], dtype=object),
    })
    reasons = []
    for p, r in zip(items["policy_output"], items["reference_output"]):
        if not isinstance(p, str):
            reasons.append("no policy output")
        elif not p.strip():
            reasons.append("empty policy output")
        elif not r.strip():
            reasons.append("empty reference output")
        else:
            reasons.append("")
    items["reason"] = reasons
    dropped: dict[str, int] = {}
    for r in items["reason"]:
        if r:
            _add(dropped, r)
    return Alignment(items=items.reset_index(drop=True), dropped=dropped, ignored=ignored,
                     policy=policy, reference=reference)


# ----------------------------------------------------------------------------- from judgments

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
                         seed: int = 0) -> WinRate:
    """Rating-protocol win rate from two frames of ratings.

    ``policy_scores`` / ``reference_scores``: frames with ``instruction`` and ``score`` (NaN =
    invalid; ``input``, ``response``, ``status``/``error``, ``dataset`` optional), or Series of
    scores indexed by instruction. The first judgment per instruction counts (others are
    counted in ``ignored``). Per instruction: win = 1 if the policy's score is higher, 0.5 if
    equal, 0 if lower. ``items`` is the evaluation set (an :class:`Alignment` or a frame with
    ``instruction``); instructions without both valid scores are dropped with the reason, and a
    judgment whose ``response`` is not the output being evaluated is dropped too. Without
    ``items`` the evaluation set is every instruction that has either judgment.
    """
    ignored: dict[str, int] = {}
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
                   ignored=ignored, n_boot=n_boot, seed=seed)


def winrate_from_rankings(decisions: pd.DataFrame | Sequence[str], *, items: Alignment | pd.DataFrame | None = None,
                          policy: str | None = None, reference: str | None = None, judge: str = "",
                          n_boot: int = N_BOOT, seed: int = 0) -> WinRate:
    """Ranking-protocol win rate from pairwise decisions with the reference as (a), the policy as (b).

    ``decisions``: a frame with ``instruction`` and ``decision`` in ``a``/``b``/``equal`` (NaN or
    anything else = invalid; ``verdict_12``/``verdict_21``, ``status``, ``response1`` = the
    reference's output, ``response2`` = the policy's, ``dataset`` optional), or a plain sequence of
    decisions (one per item). Win = 1 for ``b``, 0.5 for ``equal``, 0 for ``a``; the first
    judgment per instruction counts. ``items`` as in :func:`winrate_from_ratings`.
    """
    ignored: dict[str, int] = {}
    if not isinstance(decisions, pd.DataFrame):
        decisions = list(decisions)
        decisions = pd.DataFrame({"instruction": [f"item {i + 1}" for i in range(len(decisions))],
                                  "decision": decisions})
    dec = _judgment_frame(decisions, "decision", "ranking", ignored)
    frame, ign = _items_frame(items, [dec.reset_index()])
    for k, v in ign.items():
        _add(ignored, k, v)
    if isinstance(items, Alignment):
        policy, reference = policy or items.policy, reference or items.reference
    extra = [c for c in ("verdict_12", "verdict_21") if c in dec.columns]
    wins, reasons, ds, ex = [], [], [], {c: [] for c in extra}
    for rec in frame.itertuples(index=False):
        d = dec.loc[rec.key] if rec.key in dec.index else None
        value = d["decision"] if d is not None else None
        value = value.strip().lower() if isinstance(value, str) else None
        ds.append(value)
        for c in extra:
            ex[c].append(d[c] if d is not None else None)
        reason = rec.reason
        if not reason:
            if d is None:
                reason = "no ranking judgment"
            elif value not in DECISION_WIN:
                reason = _invalid_reason(d, "ranking")
            elif "response1" in dec.columns and not _text_matches(d["response1"], getattr(rec, "reference_output", None)):
                reason = "ranking judgment's (a) is not the reference output"
            elif "response2" in dec.columns and not _text_matches(d["response2"], getattr(rec, "policy_output", None)):
                reason = "ranking judgment's (b) is not the policy output"
        reasons.append(reason)
        wins.append(float("nan") if reason else DECISION_WIN[value])
    frame["decision"] = ds
    for c in extra:
        frame[c] = ex[c]
    frame["win"], frame["reason"] = wins, reasons
    return _result("ranking", frame, policy=policy or "policy", reference=reference or "reference", judge=judge,
                   ignored=ignored, n_boot=n_boot, seed=seed)


def no_judgments(items: Alignment, protocol: str, *, reason: str = "no recorded judgment",
                 policy: str | None = None, reference: str | None = None, judge: str = "") -> WinRate:
    """A result with nothing counted: every usable instruction dropped for ``reason``."""
    frame = items.items.copy()
    frame["reason"] = [r or reason for r in frame["reason"]]
    frame["win"] = float("nan")
    return _result(protocol, frame, policy=policy or items.policy, reference=reference or items.reference,
                   judge=judge, ignored=items.ignored, n_boot=0, seed=0)


# ----------------------------------------------------------------------------- comparison

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
    """One row per result: policy, protocol, win rate ×100, both intervals, n, W/T/L, dropped + reasons."""
    rows = []
    for r in results:
        rows.append({"policy": r.policy, "protocol": r.protocol, "reference": r.reference, "judge": r.judge,
                     "winrate": r.winrate, "ci_sem": r.ci_sem, "ci_low": r.ci_low, "ci_high": r.ci_high,
                     "n": r.n, "n_items": r.n_items, "wins": r.wins, "ties": r.ties, "losses": r.losses,
                     "dropped": r.n_dropped,
                     "dropped_reasons": "; ".join(f"{k}: {v}" for k, v in r.dropped.items()),
                     "ignored": "; ".join(f"{k}: {v}" for k, v in r.ignored.items())})
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
    n, winrate, ci_sem, mean_policy_words, mean_reference_words.
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
                         "mean_policy_words": float(pw[m].mean()) if m.any() else float("nan"),
                         "mean_reference_words": float(rw[m].mean()) if m.any() else float("nan")})
    return pd.DataFrame(rows, columns=["policy", "protocol", "bucket", "n", "winrate", "ci_sem",
                                       "mean_policy_words", "mean_reference_words"])


# ----------------------------------------------------------------------------- recorded judgments (offline)

def winrates_from_recorded(policy_outputs: pd.DataFrame | os.PathLike | str,
                           reference_outputs: pd.DataFrame | os.PathLike | str, *,
                           policy_ratings: pd.DataFrame | os.PathLike | str | None = None,
                           reference_ratings: pd.DataFrame | os.PathLike | str | None = None,
                           rankings: pd.DataFrame | os.PathLike | str | None = None,
                           datasets: Sequence[str] | None = PAPER_DATASETS, policy: str | None = None,
                           reference: str | None = None, judge: str = "recorded", n_boot: int = N_BOOT,
                           seed: int = 0) -> dict[str, WinRate]:
    """Both protocols' win rates from recorded feedback, on the outputs' evaluation set.

    Ratings files: the original headerless ``instruction,input,output,score`` CSVs (or canonical
    frames); rankings: headerless ``instruction,input,output1,output2,feedback`` with the
    reference as output1 = (a). A protocol whose files are not given gets a result with nothing
    counted and every instruction dropped as "no recorded judgment" — nothing is made up.
    A recorded judgment of a different text than the output being evaluated is dropped.
    """
    al = align_outputs(policy_outputs, reference_outputs, datasets=datasets, policy=policy, reference=reference)

    def load(x, reader):
        return reader(x) if isinstance(x, (str, os.PathLike)) else x

    out: dict[str, WinRate] = {}
    if policy_ratings is not None and reference_ratings is not None:
        out["rating"] = winrate_from_ratings(load(policy_ratings, sfdata.read_ratings_csv),
                                             load(reference_ratings, sfdata.read_ratings_csv), items=al,
                                             judge=judge, n_boot=n_boot, seed=seed)
    else:
        missing = "policy" if policy_ratings is None else "reference"
        if policy_ratings is None and reference_ratings is None:
            missing = "policy and reference"
        out["rating"] = no_judgments(al, "rating", reason=f"no recorded {missing} rating", judge=judge)
    if rankings is not None:
        out["ranking"] = winrate_from_rankings(load(rankings, sfdata.read_rankings_csv), items=al, judge=judge,
                                               n_boot=n_boot, seed=seed)
    else:
        out["ranking"] = no_judgments(al, "ranking", reason="no recorded ranking", judge=judge)
    return out


# ----------------------------------------------------------------------------- the original scripts' rules

@dataclass
class OriginalWinRate:
    """What the original ``calc_win_rate_from_*_eval.py`` would print, and the counts behind it."""

    protocol: str
    winrate: float
    ci_sem: float
    n: int
    wins: int
    ties: int
    losses: int
    rows: dict[str, int]

    def summary(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}


def _original(protocol: str, win: np.ndarray, rows: dict[str, int]) -> OriginalWinRate:
    wins, ties, losses = _count(win)
    return OriginalWinRate(protocol=protocol, winrate=100 * float(win.mean()) if len(win) else float("nan"),
                           ci_sem=100 * ci_sem(win), n=len(win), wins=wins, ties=ties, losses=losses, rows=rows)


def original_winrate_from_ratings(reference_feedback: os.PathLike | str,
                                  policy_feedback: os.PathLike | str) -> OriginalWinRate:
    """The original rating-protocol rule: read the two headerless ratings CSVs, keep the first
    row per instruction in each, inner-join on the instruction text (input and output ignored),
    win = 1 if the policy's score > the reference's, 0.5 if equal; mean ×100 and 1.96·SEM ×100.
    Instructions rated in only one file are left out without notice — ``rows`` says how many.
    """
    ref = sfdata.read_ratings_csv(reference_feedback)
    pol = sfdata.read_ratings_csv(policy_feedback)
    ref1 = ref.drop_duplicates("instruction", keep="first")
    pol1 = pol.drop_duplicates("instruction", keep="first")
    merged = ref1[["instruction", "score"]].merge(pol1[["instruction", "score"]], on="instruction",
                                                  suffixes=("_reference", "_policy"))
    sr, sp = merged["score_reference"].to_numpy(float), merged["score_policy"].to_numpy(float)
    win = np.where(sp > sr, 1.0, np.where(sp == sr, 0.5, 0.0))
    rows = {"reference_rows": len(ref), "policy_rows": len(pol), "reference_first_per_instruction": len(ref1),
            "policy_first_per_instruction": len(pol1), "matched": len(merged),
            "reference_only": len(ref1) - len(merged), "policy_only": len(pol1) - len(merged)}
    return _original("rating", win, rows)


def original_winrate_from_rankings(feedback: os.PathLike | str) -> OriginalWinRate:
    """The original ranking-protocol rule: every row of the headerless rankings CSV counts
    ((b) = 1, equal = 0.5, (a) = 0; the reference is output1 = (a)); mean ×100 and 1.96·SEM ×100.
    The script does not de-duplicate: ``rows['duplicate_instructions']`` says whether that matters.
    """
    df = sfdata.read_rankings_csv(feedback)
    win = np.array([DECISION_WIN[d] for d in df["decision"]], dtype=float)
    rows = {"rows": len(df), "duplicate_instructions": int(df["instruction"].duplicated().sum())}
    return _original("ranking", win, rows)


# ----------------------------------------------------------------------------- judge-driven

@dataclass
class Evaluation:
    """One policy evaluated against a reference with a judge: the alignment and a :class:`WinRate`
    per protocol, plus the judge's accounting (``stats`` per protocol from rate()/rank())."""

    policy: str
    reference: str
    judge: str
    alignment: Alignment
    results: dict[str, WinRate]
    stats: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        return results_table(self.results.values())

    def summary(self) -> dict[str, Any]:
        return {"policy": self.policy, "reference": self.reference, "judge": self.judge,
                "results": {p: r.summary() for p, r in self.results.items()},
                "alignment": {"dropped": self.alignment.dropped, "ignored": self.alignment.ignored},
                "stats": _jsonable(self.stats)}


def _jsonable(obj):
    try:
        json.dumps(obj)
        return obj
    except TypeError:
        return json.loads(json.dumps(obj, default=str))


def _align_back(asked: pd.DataFrame, got: pd.DataFrame, text_cols: Sequence[str]) -> pd.DataFrame:
    """The judged rows in the order asked: row by row when the stage kept order, else by texts."""
    if len(got) == len(asked) and all(
            c in got and [_norm_text(x) for x in got[c]] == [_norm_text(x) for x in asked[c]] for c in text_cols):
        return got.reset_index(drop=True)
    by = {}
    for i, rec in enumerate(got.to_dict("records")):
        by.setdefault(tuple(_norm_text(rec[c]) for c in ["instruction", *text_cols]), i)
    idx = [by.get(tuple(_norm_text(rec[c]) for c in ["instruction", *text_cols])) for rec in asked.to_dict("records")]
    rows = [got.iloc[i].to_dict() if i is not None else {"status": "not returned by the judging stage"} for i in idx]
    return pd.DataFrame(rows)


def evaluate(policy_outputs: pd.DataFrame | os.PathLike | str, reference_outputs: pd.DataFrame | os.PathLike | str,
             judge, protocols: Sequence[str] = PROTOCOLS, store=None, *, datasets: Sequence[str] | None = None,
             policy: str | None = None, reference: str | None = None, limit: int | None = None,
             n_boot: int = N_BOOT, seed: int = 0, **judge_kwargs) -> Evaluation:
    """Evaluate a policy's ``model_outputs`` against a reference's with ``judge`` under the protocols.

    ``judge`` is a :class:`sflib.judges.base.Judge` or a name for ``sflib.judges.get_judge``.
    Rating protocol: ``sflib.ratings.rate`` on the reference's and the policy's outputs (one table,
    so the same judge and prompt rate both). Ranking protocol: ``sflib.rankings.rank`` with the
    reference as response1 = (a) and the policy as response2 = (b), both orders. ``store`` is
    passed to both, so a re-run resumes from the cache and pays nothing twice. ``limit`` keeps the
    first n usable instructions (the rest are dropped as "beyond the limit", counted).
    """
    if isinstance(judge, str):
        from .judges import get_judge
        judge = get_judge(judge)
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}; use 'rating' and/or 'ranking'")
    al = align_outputs(policy_outputs, reference_outputs, datasets=datasets, policy=policy, reference=reference)
    if limit is not None:
        usable = np.flatnonzero(al.items["reason"].to_numpy() == "")
        beyond = usable[limit:]
        al.items.loc[beyond, "reason"] = "beyond the limit"
        _add(al.dropped, "beyond the limit", len(beyond))
    pairs = al.pairs
    jname = getattr(judge, "name", str(judge))
    results, all_stats = {}, {}
    if not len(pairs):   # nothing to ask the judge: every instruction is dropped, with its reason
        empty = pd.DataFrame({"instruction": pd.Series(dtype=str), "score": pd.Series(dtype=float),
                              "decision": pd.Series(dtype=object)})
        results = {"rating": winrate_from_ratings(empty, empty, items=al, judge=jname, n_boot=n_boot, seed=seed),
                   "ranking": winrate_from_rankings(empty, items=al, judge=jname, n_boot=n_boot, seed=seed)}
        return Evaluation(policy=al.policy, reference=al.reference, judge=jname, alignment=al,
                          results={p: results[p] for p in protocols}, stats={})
    if "rating" in protocols:
        from .ratings import rate
        asked = pd.DataFrame({
            "instruction": list(pairs["instruction"]) * 2, "input": list(pairs["input"]) * 2,
            "response": list(pairs["reference_output"]) + list(pairs["policy_output"]),
            "dataset": list(pairs["dataset"]) * 2})
        asked = sfdata.add_ids(asked)
        got = rate(asked, judge, store=store, **judge_kwargs)
        all_stats["rating"] = got.attrs.get("stats", {})
        got = _align_back(asked, got, ["response"])
        n = len(pairs)
        ref_j = got.iloc[:n].reset_index(drop=True).assign(instruction=pairs["instruction"].to_numpy(),
                                                            input=pairs["input"].to_numpy())
        pol_j = got.iloc[n:].reset_index(drop=True).assign(instruction=pairs["instruction"].to_numpy(),
                                                            input=pairs["input"].to_numpy())
        for j in (ref_j, pol_j):
            if "score" not in j:
                j["score"] = float("nan")
            if "valid" in j:
                j.loc[~j["valid"].fillna(False).astype(bool), "score"] = float("nan")
        results["rating"] = winrate_from_ratings(pol_j, ref_j, items=al, judge=jname, n_boot=n_boot, seed=seed)
    if "ranking" in protocols:
        from .rankings import rank
        asked = sfdata.add_ids(pd.DataFrame({
            "instruction": pairs["instruction"], "input": pairs["input"],
            "response1": pairs["reference_output"], "response2": pairs["policy_output"], "dataset": pairs["dataset"]}))
        got = rank(asked, judge, store=store, both_orders=True, **judge_kwargs)
        all_stats["ranking"] = got.attrs.get("stats", {})
        got = _align_back(asked, got, ["response1", "response2"])
        got = got.assign(instruction=pairs["instruction"].to_numpy(), input=pairs["input"].to_numpy())
        if "decision" not in got:
            got["decision"] = None
        results["ranking"] = winrate_from_rankings(got, items=al, judge=jname, n_boot=n_boot, seed=seed)
    return Evaluation(policy=al.policy, reference=al.reference, judge=jname, alignment=al, results=results,
                      stats=all_stats)


# ----------------------------------------------------------------------------- CLI

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
    p.add_argument("--rankings", metavar="CSV", help="offline: recorded decisions, reference = (a), policy = (b)")
    p.add_argument("--n-boot", type=int, default=N_BOOT)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="OUT", help="write all results as JSON here")
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
        for path in args.policy:
            ev = evaluate(path, args.reference, args.judge, protocols, store=store, datasets=args.datasets,
                          limit=args.limit, n_boot=args.n_boot, seed=args.seed)
            per_policy[ev.policy] = ev.results
            out["policies"][ev.policy] = ev.summary()
    else:
        if len(args.policy) != 1:
            raise ValueError("the offline mode evaluates one --policy (the one the recorded feedback is of)")
        if bool(args.policy_ratings) != bool(args.reference_ratings):
            raise ValueError("the rating protocol needs both --policy-ratings and --reference-ratings")
        res = winrates_from_recorded(args.policy[0], args.reference, policy_ratings=args.policy_ratings,
                                     reference_ratings=args.reference_ratings, rankings=args.rankings,
                                     datasets=args.datasets, n_boot=args.n_boot, seed=args.seed)
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
    if args.json:
        sfdata.atomic_write_text(args.json, json.dumps(out, indent=2, ensure_ascii=False, default=str))
        print(f"wrote {args.json}")
    return 0
