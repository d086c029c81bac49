"""Human judgments in and out as plain tables (CSV / JSONL), the way annotation tools export them.

One row per answer. Ratings: ``annotator``, the item (``item_id`` and/or ``instruction``, ``input``,
``response``), ``score`` (1–7). Rankings: ``annotator``, the pair (``item_id`` and/or ``instruction``,
``input``, ``response1``, ``response2``), ``choice`` (``a`` = response1 better, ``b``, ``equal``) and
optionally ``order`` (``12`` if response1 was shown first, ``21`` if response2 was). Optional:
``comment``, ``skipped`` (true = the annotator skipped it). Common aliases are read too (``worker``,
``rater``, ``rating``, ``label``, ``preference``, ``output1``/``output2``; choices ``(a)``, ``1``/``2``,
``tie``).

:func:`export_human` writes exactly the columns :func:`import_human` reads, so a round trip gives
the same store rows. Import never overwrites a different stored answer unless ``on_conflict="replace"``;
all rows are checked before anything is written (one bad row: nothing is written, and the error
names the file, row and field).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core import data as d
from .. import io as sfio
from .items import check_kind, make_items
from .lease import Lease, PREFIX, judge_name, normalise_name
from .session import answer_row, stored_answers
from .feedback import _with_store, known_annotators, to_position, to_response_choice

COMMON = ["annotator", "item_id", "instruction_id", "instruction", "input"]
EXPORT_COLUMNS = {
    "ratings": COMMON + ["response_id", "response", "score", "skipped", "comment", "latency_s", "answered_at"],
    "rankings": COMMON + ["response_id_1", "response_id_2", "response1", "response2", "order", "choice", "skipped",
                          "comment", "latency_s", "answered_at"],
}
ALIASES = {"annotator": ["annotator_id", "worker", "worker_id", "rater", "user", "judge"],
           "score": ["rating", "label"], "choice": ["preference", "decision", "label", "feedback"],
           "response": ["output"], "response1": ["output1", "output_1", "response_1"],
           "response2": ["output2", "output_2", "response_2"], "comment": ["comments", "note", "notes"]}
CHOICE_WORDS = {"a": "a", "(a)": "a", "output (a)": "a", "1": "a", "response1": "a",
                "b": "b", "(b)": "b", "output (b)": "b", "2": "b", "response2": "b",
                "equal": "equal", "tie": "equal", "same": "equal", "=": "equal", "0": "equal"}


def export_human(store: Any, kind: str = "ratings", path: str | os.PathLike | None = None,
                 annotators: list[str] | None = None) -> pd.DataFrame:
    """Every stored human answer of ``kind`` (one row per answer, oldest first); also written to ``path``
    (``.csv``, ``.jsonl`` or ``.parquet``) when given, atomically."""
    kind = check_kind(kind)
    names = [normalise_name(a) for a in annotators] if annotators else known_annotators(store, kind)
    rows = []
    for name in names:
        df = _with_store(store, lambda st: stored_answers(st, judge_name(name), kind))
        for r in df.to_dict("records"):
            m = r["meta"]
            rec = {c: m.get(c, "") for c in EXPORT_COLUMNS[kind] if c in m}
            rec.update(annotator=name, item_id=r["item_id"], skipped=not r["valid"], comment=m.get("comment", ""),
                       latency_s=round(float(r["latency_s"]), 3),
                       answered_at=pd.Timestamp(r["created_at"], unit="s", tz="UTC").isoformat())
            if kind == "ratings":
                rec["score"] = r["value"] if r["valid"] else None
            else:
                rec["order"] = r["order"]
                rec["choice"] = to_response_choice(r["value"], r["order"]) if r["valid"] else None
            rows.append(rec)
    out = pd.DataFrame(rows, columns=EXPORT_COLUMNS[kind])
    if path is not None:
        _write(out, Path(path))
    return out


def _write(df: pd.DataFrame, path: Path) -> None:
    if path.suffix.lower() == ".csv":
        with d.atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)
    else:
        sfio.write_table(df, path)


def _read(source) -> tuple[pd.DataFrame, str]:
    if isinstance(source, pd.DataFrame):
        return source.copy(), "<table>"
    path = Path(source)
    if not path.exists():
        raise d.DataError(path, "file does not exist")
    if path.suffix.lower() == ".csv":
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    elif path.suffix.lower() in (".jsonl", ".json", ".parquet"):
        df = sfio.read_table(path) if path.suffix.lower() != ".json" else pd.read_json(path)
    else:
        raise d.DataError(path, f"unsupported file type '{path.suffix}' (use .csv, .jsonl or .parquet)")
    return df, str(path)


def _canonical_columns(df: pd.DataFrame, where: str) -> pd.DataFrame:
    df = df.rename(columns={c: str(c).strip().lower() for c in df.columns})
    for name, aliases in ALIASES.items():
        if name not in df.columns:
            for alias in aliases:
                if alias in df.columns and not (alias == "label" and name == "choice" and "score" in df.columns):
                    df = df.rename(columns={alias: name})
                    break
    if "annotator" not in df.columns:
        raise d.DataError(where, f"no annotator column (have: {', '.join(df.columns)})", field="annotator")
    return df


def _blank(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() in ("", "nan", "None")


def _truthy(v) -> bool:
    return not _blank(v) and str(v).strip().lower() in ("1", "true", "yes", "y", "skip", "skipped")


def import_human(source, store: Any, *, kind: str | None = None, items: pd.DataFrame | None = None,
                 on_conflict: str = "keep") -> dict:
    """Bring a table of human judgments into ``store`` as judges ``human:<annotator>``.

    ``source``: a ``.csv`` / ``.jsonl`` / ``.parquet`` file or a DataFrame. ``kind`` is inferred
    (``score`` column: ratings, ``choice``: rankings) unless given. ``items``: the item list to look
    ``item_id`` up in when rows carry no texts. ``on_conflict``: ``"keep"`` (default: a stored answer
    that differs is left as it is and counted) or ``"replace"``.

    Returns counts: ``rows``, ``written``, ``unchanged`` (already stored, same answer), ``conflicts``
    (kept), ``annotators``, ``kind``. An annotator open in a live widget elsewhere is refused
    (:class:`~sflib.human.lease.AnnotatorBusy`) so the two cannot race.
    """
    if on_conflict not in ("keep", "replace"):
        raise ValueError(f"on_conflict must be 'keep' or 'replace', got {on_conflict!r}")
    df, where = _read(source)
    df = _canonical_columns(df, where)
    if kind is None:
        if "score" in df.columns:
            kind = "ratings"
        elif "choice" in df.columns:
            kind = "rankings"
        else:
            raise d.DataError(where, "neither a score column (ratings) nor a choice column (rankings); "
                                     f"have: {', '.join(df.columns)}", field="score")
    kind = check_kind(kind)
    value_col = "score" if kind == "ratings" else "choice"
    texts = ["instruction", "response"] if kind == "ratings" else ["instruction", "response1", "response2"]
    known = {} if items is None else {str(r["item_id"]): r for r in make_items(items, kind).to_dict("records")}
    has_texts = all(c in df.columns for c in texts)
    if not has_texts and "item_id" not in df.columns:
        raise d.DataError(where, f"rows need item_id or the texts ({', '.join(texts)})", field="item_id")
    if has_texts:
        tex = df[[c for c in texts + ["input"] if c in df.columns]].copy()
        tex["input"] = tex["input"] if "input" in tex.columns else ""
        built = make_items_rows(tex, kind)
    rows, annotators = [], set()
    for k, r in enumerate(df.to_dict("records")):
        n = k + 1
        try:
            name = normalise_name(str(r["annotator"]))
        except ValueError as e:
            raise d.DataError(where, str(e), row=n, field="annotator") from None
        if has_texts and not any(_blank(r.get(c)) for c in texts):
            item = built[k]
            if not _blank(r.get("item_id")) and str(r["item_id"]) != item["item_id"]:
                raise d.DataError(where, f"item_id {r['item_id']!r} does not match the texts (their id is "
                                         f"{item['item_id']!r})", row=n, field="item_id")
        elif not _blank(r.get("item_id")) and str(r["item_id"]) in known:
            item = known[str(r["item_id"])]
        else:
            raise d.DataError(where, "unknown item: give the texts or an item_id found in items=", row=n,
                              field="item_id")
        order = "" if kind == "ratings" else str(r.get("order") or "12").strip()
        if kind == "rankings" and order not in ("12", "21"):
            raise d.DataError(where, f"order must be 12 or 21, got {order!r}", row=n, field="order")
        skipped = _truthy(r.get("skipped"))
        value = None
        if not skipped:
            raw = r.get(value_col)
            if _blank(raw):
                raise d.DataError(where, "empty (mark the row skipped=true if the annotator skipped it)",
                                  row=n, field=value_col)
            if kind == "ratings":
                try:
                    value = float(raw)
                except (TypeError, ValueError):
                    value = None
                if value is None or value != int(value) or not 1 <= value <= 7:
                    raise d.DataError(where, f"score must be a whole number from 1 to 7, got {raw!r}", row=n,
                                      field="score")
                value = int(value)
            else:
                choice = CHOICE_WORDS.get(str(raw).strip().lower())
                if choice is None:
                    raise d.DataError(where, f"choice must be a, b or equal, got {raw!r}", row=n, field="choice")
                value = to_position(choice, order)
        comment = "" if _blank(r.get("comment")) else str(r["comment"])
        rows.append(answer_row(judge_name(name), kind, item, order, value, comment=comment, source=f"import:{where}"))
        annotators.add(name)
    return _with_store(store, lambda st: _write_rows(st, rows, kind, sorted(annotators), on_conflict))


def make_items_rows(tex: pd.DataFrame, kind: str) -> list[dict]:
    """Item records for each row of a texts table (duplicates allowed, input order kept)."""
    from ..feedback import ratings

    df = ratings._with_ids(tex, ["instruction", "input"] + (["response"] if kind == "ratings" else
                                                              ["response1", "response2"]),
                           ["instruction_id"] + (["response_id"] if kind == "ratings" else
                                                 ["response_id_1", "response_id_2"]))
    df["item_id"] = df["response_id"] if kind == "ratings" else df["response_id_1"] + "-" + df["response_id_2"]
    return df.to_dict("records")


def _write_rows(store, rows: list[dict], kind: str, annotators: list[str], on_conflict: str) -> dict:
    leases = [Lease(store, a, kind) for a in annotators]
    try:
        existing = store.get_many([r["key"] for r in rows])
        todo, unchanged, conflicts = {}, 0, 0
        for r in rows:
            old = existing.get(r["key"])
            if old is not None and old["value"] == r["value"] and old["status"] == r["status"]:
                unchanged += 1
            elif old is not None and on_conflict == "keep":
                conflicts += 1
            else:
                todo[r["key"]] = r  # a later row for the same task wins
        store.put_many(list(todo.values()))
    finally:
        for lease in leases:
            lease.close()
    return {"kind": kind, "rows": len(rows), "written": len(todo), "unchanged": unchanged, "conflicts": conflicts,
            "annotators": [PREFIX + a for a in annotators]}
