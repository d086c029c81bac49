"""A judge that answers from previously recorded feedback — no model calls, instant, offline.

``get_judge("recorded:data/canonical/sample_ratings.jsonl,data/canonical/sample_rankings.jsonl")``
is how the notebooks reproduce the paper's GPT-3.5 feedback without an API key.

Recorded files (any mix, first recording of an item wins):

Every file is read by :func:`sflib.io.read_ratings` / :func:`sflib.io.read_rankings` (format from
the content, not the suffix); which of the two is told from its columns.

- tables (JSON Lines, JSON, CSV with a header, Parquet, :func:`sflib.io.write_table`) with rating columns
  (``instruction, input, response, score``) or ranking columns (``instruction, input, response1,
  response2, decision``) — including the outputs of :func:`sflib.feedback.ratings.rate` /
  :func:`sflib.feedback.rankings.rank`; rows without a valid score/decision are *not* recorded answers.
  A rankings table that has ``verdict_12`` / ``verdict_21`` (from ``rank``) is replayed per order;
- the original headerless CSVs: ratings ``instruction,input,output,score`` and rankings
  ``instruction,input,output1,output2,feedback`` (layout told apart by the number of fields).

It answers requests built by :func:`sflib.feedback.ratings.rate` and :func:`sflib.feedback.rankings.rank` from their
``Request.meta`` (never from the prompt text):

- ``kind``: ``"rating"`` or ``"ranking"``; ``instruction``, ``input``;
- ratings: ``response`` (and ``repeat``, see below);
- rankings: ``response1``, ``response2`` (the pair as given to ``rank``) and ``order``: ``"12"``
  when response1 is shown as Output (a), ``"21"`` when the pair is shown swapped.

Items are matched by text (through the stable ids of :mod:`sflib.core.data`), so the same response gets
its recording wherever it appears, in either orientation of a pair.

**Replies are synthetic**: ``"Score: 6"`` or ``"Output (b)"`` on the first line, followed by a
line naming the file it was recorded in; the original judge's wording was not released.

**Rankings in both orders.** The original files record only the final decision, not the two
verdicts. A decision ``a`` (response1 better) is replayed as "Output (a)" when response1 is shown
first and "Output (b)" when the pair is swapped; ``b`` symmetrically; ``equal`` — which in the
paper's protocol means the two orders disagreed — is replayed as a disagreement, "Output (a)" in
both orders (as if the judge always picked the first-shown output). So ``rank(..., both_orders=True)``
reproduces every recorded decision exactly, but position-bias numbers computed from recorded
decisions attribute every disagreement to a first-position preference.

Anything not recorded is a per-item failure (``Completion.error``) naming the item and the files,
e.g. ``no recorded rating for instruction 10d3bc000ee04328 ('In this task, ...'), response
a1b2... ('') in feedback_ratings_sample_generation.csv`` — the engine stores it as ``failed``.

Repeated recordings: the paper's sample rates two repeated responses twice, with different scores
(6 then 5, 5 then 4). :func:`sflib.feedback.ratings.rate` marks the k-th repetition of a response in its
input (``meta["repeat"] = k``) and the judge answers the k-th recording (the first one when there
are fewer), so the 99 recorded ratings are reproduced row for row. A ranking recorded twice
answers with its first recording. :attr:`RecordedJudge.conflicts` counts items recorded more than
once with different answers.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd

from ..core import catalog
from ..core import data as d
from .. import io as sfio
from .base import Completion, Judge, Request


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _csv_width(path: Path) -> int:
    """The number of fields in the first record of a CSV (4 = ratings, 5 = rankings)."""
    text = path.read_text(encoding="utf-8-sig")
    first = next(csv.reader(io.StringIO(text)), [])
    return len(first)


def _feedback_kind(path: Path) -> str:
    """``"ratings"`` or ``"rankings"``, from the file's content (columns, or the width of a headerless CSV)."""
    try:
        raw = sfio.load(path)
    except d.DataError as e:
        if not e.reason.startswith("the first row is not a header"):
            raise
        width = _csv_width(path)  # the original headerless layouts
        if width in (4, 5):
            return "ratings" if width == 4 else "rankings"
        raise d.DataError(path, f"first row has {width} fields; a recorded feedback CSV has 4 "
                                "(instruction,input,output,score) or 5 "
                                "(instruction,input,output1,output2,feedback)", row=1) from None
    cols = {str(c).strip().lower() for c in raw.frame.columns}
    if "score" in cols and cols & {"response", "output"}:
        return "ratings"
    if cols & {"response1", "output1", "output_1"} and cols & {"decision", "feedback"}:
        return "rankings"
    raise d.DataError(path, "is neither a ratings table (instruction, input, response, score) nor a rankings "
                            "table (instruction, input, response1, response2, decision); it has: "
                            f"{', '.join(map(str, raw.frame.columns))}")


def _short(text: str, n: int = 50) -> str:
    text = " ".join(str(text).split())
    return repr(text if len(text) <= n else text[: n - 3] + "...")


#: the paper's released GPT-3.5 feedback: canonical table name -> original CSV (relative to
#: data/original), from :mod:`sflib.core.catalog`
VENDORED = {name: catalog.entry(catalog.BY_TABLE[name]).original
            for name in ("sample_ratings", "sample_rankings", "eval_ratings_reference", "eval_ratings_ratings_rm",
                         "eval_rankings_reference_vs_ratings_rm")}
#: the name of the judge that replays them
PAPER_JUDGE = "recorded:gpt-3.5-turbo (paper)"


def vendored_feedback_files(which: Iterable[str] | None = None) -> list[Path]:
    """The vendored recorded feedback files (:func:`sflib.core.catalog.path`): ``data/canonical/<name>.jsonl``
    where present, else the original CSV under ``data/original``. ``which`` picks names from
    :data:`VENDORED` (default all)."""
    files = []
    for name in (which or VENDORED):
        if name not in VENDORED:
            raise KeyError(f"unknown vendored feedback {name!r}; choose one of: {', '.join(VENDORED)}")
        role = catalog.BY_TABLE[name]
        try:
            files.append(catalog.path(role))
        except FileNotFoundError:  # data/canonical not generated: the released CSV
            files.append(catalog.path(role, original=True))
    return files


class RecordedJudge(Judge):
    """Answer rating and ranking requests from recorded feedback files (see the module docs)."""

    concurrency = 1
    answers_on_retry = False

    def __init__(self, files: str | Path | Iterable[str | Path], *, name: str | None = None):
        if isinstance(files, (str, Path)):
            files = [files]
        self.files = [Path(f) for f in files]
        if not self.files:
            raise ValueError("RecordedJudge needs at least one recorded feedback file")
        #: (instruction_id, response_id) -> [(score, file name), ...] in recording order
        self.ratings: dict[tuple[str, str], list[tuple[int, str]]] = {}
        #: (instruction_id, first-shown response_id, second-shown response_id) -> ('a'|'b', file name)
        self.positions: dict[tuple[str, str, str], tuple[str, str]] = {}
        #: how many items were recorded more than once with different answers (first one is used)
        self.conflicts = 0
        digest = hashlib.sha256()
        for path in self.files:
            if not path.exists():
                raise d.DataError(path, "recorded feedback file not found")
            digest.update(path.read_bytes())
            self._load(path)
        self.name = name or "recorded:" + ",".join(p.name for p in self.files)
        self.model = "recorded"
        # part of the cache key: a changed recording is not answered from a stale cache
        self.params = {"recorded_sha256": digest.hexdigest()[:16]}

    # ------------------------------------------------------------------ loading

    def _load(self, path: Path) -> None:
        kind = _feedback_kind(path)
        if kind == "ratings":
            self._add_ratings(sfio.read_ratings(path, missing_as_invalid=True), path)
        else:
            self._add_rankings(sfio.read_rankings(path, missing_as_invalid=True), path)

    def _add_ratings(self, df: pd.DataFrame, path: Path) -> None:
        for row in df.itertuples(index=False):
            if _is_missing(row.score):
                continue  # an invalid/failed rating is not a recorded answer
            iid = d.make_id(row.instruction, row.input)
            key = (iid, d.make_response_id(iid, row.response))
            score = int(row.score)
            recorded = self.ratings.setdefault(key, [])
            self.conflicts += bool(recorded) and recorded[0][0] != score
            recorded.append((score, path.name))

    def _set_position(self, key: tuple[str, str, str], position: object, path: Path) -> None:
        if position not in ("a", "b"):
            return
        if key in self.positions:
            self.conflicts += self.positions[key][0] != position
            return
        self.positions[key] = (position, path.name)

    def _add_rankings(self, df: pd.DataFrame, path: Path) -> None:
        per_order = "verdict_12" in df.columns and "verdict_21" in df.columns
        for rec in df.to_dict("records"):
            iid = d.make_id(rec["instruction"], rec["input"])
            r1 = d.make_response_id(iid, rec["response1"])
            r2 = d.make_response_id(iid, rec["response2"])
            if per_order:
                self._set_position((iid, r1, r2), rec.get("verdict_12"), path)
                self._set_position((iid, r2, r1), rec.get("verdict_21"), path)
                continue
            decision = rec.get("decision")
            # position picked when response1 is shown first, and when response2 is shown first
            first, swapped = {"a": ("a", "b"), "b": ("b", "a"), "equal": ("a", "a")}.get(decision, (None, None))
            self._set_position((iid, r1, r2), first, path)
            self._set_position((iid, r2, r1), swapped, path)

    # ------------------------------------------------------------------ answering

    def _where(self) -> str:
        return ", ".join(p.name for p in self.files)

    def answer(self, request: Request) -> Completion:
        """The recorded answer to one request, or a :class:`Completion` with an ``error``."""
        meta = request.meta or {}
        kind = meta.get("kind")
        try:
            iid = d.make_id(meta["instruction"], meta.get("input", ""))
            if kind == "rating":
                rid = d.make_response_id(iid, meta["response"])
                recorded = self.ratings.get((iid, rid))
                if not recorded:
                    return Completion(error=f"no recorded rating for instruction {iid} "
                                            f"({_short(meta['instruction'])}), response {rid} "
                                            f"({_short(meta['response'])}) in {self._where()}")
                repeat = int(meta.get("repeat", 0) or 0)
                score, where = recorded[repeat] if repeat < len(recorded) else recorded[0]
                return Completion(text=f"Score: {score}\n(recorded in {where})")
            if kind == "ranking":
                order = str(meta.get("order", "12"))
                if order not in ("12", "21"):
                    return Completion(error=f"meta['order'] must be '12' or '21', got {order!r}")
                r1 = d.make_response_id(iid, meta["response1"])
                r2 = d.make_response_id(iid, meta["response2"])
                shown = (r1, r2) if order == "12" else (r2, r1)
                found = self.positions.get((iid, *shown))
                if found is None:
                    return Completion(error=f"no recorded ranking for instruction {iid} "
                                            f"({_short(meta['instruction'])}), pair {r1} / {r2} shown in "
                                            f"order {order} in {self._where()}")
                return Completion(text=f"Output ({found[0]})\n(recorded in {found[1]})")
        except KeyError as e:
            return Completion(error=f"request meta lacks {e}; RecordedJudge answers requests built by "
                                    "sflib.feedback.ratings.rate and sflib.feedback.rankings.rank")
        return Completion(error=f"RecordedJudge cannot answer meta['kind']={kind!r}; "
                                "expected 'rating' or 'ranking'")

    def complete(self, requests: Iterable[Request]) -> Iterator[tuple[int, Completion]]:
        for index, request in enumerate(requests):
            yield index, self.answer(request)

    @classmethod
    def vendored(cls, which: Iterable[str] | None = None) -> "RecordedJudge":
        """The paper's released GPT-3.5 feedback (see :func:`vendored_feedback_files`), named
        :data:`PAPER_JUDGE`. ``get_judge``-style names accept ``"recorded"`` alone for this."""
        return cls(vendored_feedback_files(which), name=PAPER_JUDGE)

    def __repr__(self) -> str:
        return (f"RecordedJudge({self._where()}: {sum(map(len, self.ratings.values()))} ratings, "
                f"{len(self.positions)} ranking verdicts)")
