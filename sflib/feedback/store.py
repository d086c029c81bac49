"""The annotation store: a persistent SQLite cache and record of everything a judge said.

One row per *cache key*: the hash of (judge, prompt template version, decoding params, rendered
messages, optional salt). A row keeps what was asked (the rendered messages), what came back (the
raw text), how it was read (parsed value, valid flag), whether it worked (``status`` =
``ok`` | ``invalid`` | ``failed`` with ``error``), tokens, latency, attempts and time.

``soft`` is the logprob-weighted verdict when there is one (a rating's expected score, a pair
order's P(first shown output wins); see :mod:`sflib.feedback.logprobs`) and ``logprobs`` its small JSON
summary (``source`` = ``logprobs`` or ``text`` with the ``reason`` logprobs were not used).

On disk a row's rendered messages are compressed and its meta's long texts (instruction, input,
responses) are kept once in a ``texts`` table (:mod:`sflib.feedback.store_codec`): about 0.9 KB
per answer instead of ~4.5 KB; every read gives back exactly what was written.

Two more kinds of record live in the same file (the schema of every table:
:mod:`sflib.feedback.store_schema`):

- ``in_flight``: requests an online run has sent and not yet stored (written just before each is
  sent, removed with its answer). Rows left there were in flight when a run was killed: the
  provider may have billed them, and the next run reports them (:meth:`AnnotationStore.in_flight`);
- ``runs`` / ``claims``: which run (pid, host, start time, heartbeat) is asking which item right
  now, so that several runs on one store (a notebook and a CLI run, an array of cluster jobs)
  never pay twice for one item (see :mod:`sflib.feedback.claims`);
- ``batches`` / ``batch_requests`` / ``batch_events``: provider Batch API jobs (see
  :mod:`sflib.judges.batch`): each job's intent, input file id and batch id are written before the
  next step, so a killed run resumes without submitting anything twice.

Safety: the database runs in WAL mode and every :meth:`AnnotationStore.put` is its own committed
transaction, so a process killed at any moment loses at most what was still in flight; a re-run
reads back everything that was committed. Several processes may share one store file: each
asks only the items it claimed (:mod:`sflib.feedback.claims`) and takes the others' answers from
the store. Keep the file on a local file system (SQLite's locks are unreliable on NFS).

Only what a :class:`~sflib.judges.base.Request` / :class:`~sflib.judges.base.Completion` contains
is written here; API keys and HTTP headers never reach the store.

Example::

    store = AnnotationStore("outputs/annotations.sqlite")
    store.summary()            # counts and tokens per judge / template / status
    store.failures()           # DataFrame of failed requests (a re-run retries them)
    store.export_parquet("outputs/annotations.parquet")
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

# the tables' schema (:mod:`.store_schema`); prompts compressed against the templates (:mod:`.store_codec`)
from . import store_codec
from .store_schema import _JSON_COLUMNS, COLUMNS, STATUSES, create_tables


def _json_default(obj: Any) -> Any:
    """numpy scalars and arrays as plain numbers and lists; anything else as its text."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces, UTF-8 kept) used for hashing and storage."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_json_default)


class AnnotationStore:
    """SQLite-backed annotation cache (WAL mode; one writer).

    ``path`` is a file (its folder is created) or ``":memory:"`` for a throw-away store.
    The object is safe to use from several threads of one process (calls are serialised).
    """

    def __init__(self, path: os.PathLike | str):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0,
                                     isolation_level=None)  # autocommit; explicit transactions
        # a new store gives freed pages back to the file system (reclaim()); set before anything is
        # written (switching to WAL writes the header), no effect on an existing store
        self._conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        if self.path != ":memory:":
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"{self.path}: could not switch SQLite to WAL mode (got {mode!r}); "
                                   "put the store on a local file system")
        # NORMAL in WAL mode: a committed transaction survives the process being killed
        self._conn.execute("PRAGMA synchronous=NORMAL")
        create_tables(self._conn)  # and upgrades a store written by an older sflib (rows kept)

    # ----------------------------------------------------------------------------------- keys
    @staticmethod
    def key(judge_model: str, template_version: str, params: Mapping[str, Any] | None,
            messages: list[dict], salt: str = "") -> str:
        """sha256 (hex) of the canonical JSON of everything that determines a judge's answer."""
        text = _fast_key_text(judge_model, template_version, params, messages, salt)
        if text is None:
            payload = {
                "judge": judge_model,
                "template_version": template_version,
                "params": dict(params or {}),
                "messages": messages,
                "salt": str(salt or ""),
            }
            text = canonical_json(payload)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    # ---------------------------------------------------------------------------------- reads
    def get(self, key: str) -> dict | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str], *, with_request: bool = True) -> dict[str, dict]:
        """``{key: row}`` for the keys that are stored (JSON columns decoded, ``valid`` a bool).
        ``with_request=False`` leaves out what was asked (``prompt``, ``meta`` and ``params`` are None): a
        cache lookup needs only the answers, and skips decompressing and decoding the rest."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, dict] = {}
        columns = COLUMNS if with_request else [c for c in COLUMNS if c not in ("prompt", "meta", "params")]
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                marks = ",".join("?" * len(chunk))
                cur = self._conn.execute(
                    f"SELECT {', '.join(columns)} FROM annotations WHERE key IN ({marks})", chunk)
                rows = [{"prompt": None, "meta": None, "params": None, **dict(zip(columns, values))}
                        for values in cur.fetchall()]
                if with_request:
                    store_codec.expand(self._conn, rows)
                for row in rows:
                    row = _decode(row)
                    out[row["key"]] = row
        return out

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def __len__(self) -> int:
        return self.count()

    def count(self, status: str | None = None) -> int:
        """Number of stored rows, optionally of one status (``ok`` / ``invalid`` / ``failed``)."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        with self._lock:
            if status is None:
                return self._conn.execute("SELECT COUNT(*) FROM annotations").fetchone()[0]
            return self._conn.execute("SELECT COUNT(*) FROM annotations WHERE status = ?",
                                      (status,)).fetchone()[0]

    def summary(self) -> pd.DataFrame:
        """Rows, tokens and mean latency per judge, template version and status."""
        with self._lock:
            df = pd.read_sql_query(
                "SELECT judge, template_version, status, COUNT(*) AS n, "
                "SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, "
                "AVG(latency_s) AS mean_latency_s FROM annotations "
                "GROUP BY judge, template_version, status ORDER BY judge, template_version, status",
                self._conn)
        return df

    def to_frame(self, *, judge: str | None = None, template_version: str | None = None,
                 status: str | None = None, decode: bool = True) -> pd.DataFrame:
        """All rows (optionally filtered) as a DataFrame; JSON columns decoded unless ``decode=False``."""
        where, args = [], []
        for column, value in (("judge", judge), ("template_version", template_version),
                              ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = f"SELECT {', '.join(COLUMNS)} FROM annotations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at, key"
        with self._lock:
            df = pd.read_sql_query(sql, self._conn, params=args)
            if len(df):  # compressed prompts and shared texts back to the JSON that was written
                rows = df[["prompt", "meta"]].to_dict("records")
                store_codec.expand(self._conn, rows)
                df["prompt"], df["meta"] = [r["prompt"] for r in rows], [r["meta"] for r in rows]
        df["valid"] = df["valid"].astype(bool)
        if decode:
            for column in _JSON_COLUMNS:
                df[column] = [_loads(v) for v in df[column]]
        return df

    def failures(self) -> pd.DataFrame:
        """Requests whose last attempt failed (no reply); the next ``annotate`` run retries them."""
        return self.to_frame(status="failed")

    def invalid(self) -> pd.DataFrame:
        """Replies that came back but could not be parsed (kept verbatim in ``raw``)."""
        return self.to_frame(status="invalid")

    def export_parquet(self, path: os.PathLike | str, **filters) -> Path:
        """Write :meth:`to_frame` (JSON columns kept as JSON text) to a Parquet file, atomically."""
        from ..core.data import atomic_path

        df = self.to_frame(decode=False, **filters)
        with atomic_path(path) as tmp:
            df.to_parquet(tmp, index=False)
        return Path(path)

    # --------------------------------------------------------------------------------- writes
    def put(self, key: str, *, judge: str, model: str, template_version: str,
            params: Mapping[str, Any] | None, messages: list[dict], status: str,
            raw: str | None = None, value: Any = None, valid: bool = False,
            error: str | None = None, prompt_tokens: int = 0, completion_tokens: int = 0,
            latency_s: float = 0.0, attempts: int = 1, meta: Mapping[str, Any] | None = None,
            soft: float | None = None, logprobs: Mapping[str, Any] | None = None) -> None:
        """Insert or replace one row and commit it immediately (and forget it as in flight)."""
        self.put_many([dict(key=key, judge=judge, model=model, template_version=template_version,
                            params=params, messages=messages, status=status, raw=raw, value=value,
                            valid=valid, error=error, prompt_tokens=prompt_tokens,
                            completion_tokens=completion_tokens, latency_s=latency_s,
                            attempts=attempts, meta=meta, soft=soft, logprobs=logprobs)])

    def put_many(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert or replace several rows (same fields as :meth:`put`) in one committed transaction."""
        now = time.time()
        records, texts = [], {}
        for r in rows:
            status = r["status"]
            if status not in STATUSES:
                raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
            # the prompt compressed and meta's long texts stored once (store_codec): ~1 KB a row, not ~4.5
            prompt, meta, shared = store_codec.encode(r["messages"], dict(r.get("meta") or {}))
            texts.update(shared)
            records.append((
                r["key"], r["judge"], r.get("model") or "", r["template_version"],
                canonical_json(dict(r.get("params") or {})), prompt, meta, r.get("raw"),
                None if r.get("value") is None else canonical_json(r.get("value")),
                int(bool(r.get("valid"))), status, r.get("error"),
                int(r.get("prompt_tokens") or 0), int(r.get("completion_tokens") or 0),
                float(r.get("latency_s") or 0.0), int(r.get("attempts") or 1), now,
                None if r.get("soft") is None else float(r["soft"]),
                None if r.get("logprobs") is None else canonical_json(r["logprobs"]),
            ))
        if not records:
            return 0
        marks = ",".join("?" * len(COLUMNS))
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                store_codec.store_texts(self._conn, texts)
                self._conn.executemany(
                    f"INSERT OR REPLACE INTO annotations ({', '.join(COLUMNS)}) VALUES ({marks})",
                    records)
                self._conn.executemany("DELETE FROM in_flight WHERE key = ?",
                                       [(rec[0],) for rec in records])
                self._conn.executemany("DELETE FROM claims WHERE key = ?",
                                       [(rec[0],) for rec in records])
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return len(records)

    def delete(self, keys: Iterable[str]) -> int:
        """Forget some rows (e.g. to force a judge to be asked again); returns how many went."""
        keys = list(keys)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            n = 0
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                n += self._conn.execute(
                    f"DELETE FROM annotations WHERE key IN ({','.join('?' * len(chunk))})",
                    chunk).rowcount
            self._conn.execute("COMMIT")
        return n

    # ------------------------------------------------------------------------------ in flight
    def mark_in_flight(self, key: str, *, judge: str, run_id: str) -> None:
        """Record that a request is about to be sent (committed before it is)."""
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO in_flight VALUES (?, ?, ?, ?)",
                               (key, judge, run_id, time.time()))

    def in_flight(self, judge: str | None = None) -> pd.DataFrame:
        """Requests sent by a run that stopped before storing their answer (key, judge, run_id,
        started_at): the provider may have billed them, and asking them again pays again."""
        sql, args = "SELECT key, judge, run_id, started_at FROM in_flight", []
        if judge is not None:
            sql, args = sql + " WHERE judge = ?", [judge]
        with self._lock:
            return pd.read_sql_query(sql + " ORDER BY started_at", self._conn, params=args)

    def clear_in_flight(self, keys: Iterable[str]) -> int:
        keys = list(keys)
        with self._lock:
            n = 0
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                n += self._conn.execute(
                    f"DELETE FROM in_flight WHERE key IN ({','.join('?' * len(chunk))})",
                    chunk).rowcount
        return n

    # ------------------------------------------------------------------------ raw SQL (batches)
    def execute(self, sql: str, args: Iterable[Any] = ()) -> list[tuple]:
        """Run one statement (its own transaction) and return its rows (for :mod:`sflib.judges.batch`)."""
        with self._lock:
            return self._conn.execute(sql, tuple(args)).fetchall()

    def executemany(self, statements: Iterable[tuple[str, Iterable[Any]]]) -> None:
        """Run several statements in one committed transaction (all or nothing)."""
        with self.transaction() as conn:
            for sql, args in statements:
                conn.execute(sql, tuple(args))

    @contextmanager
    def transaction(self):
        """``with store.transaction() as conn:`` one committed ``BEGIN IMMEDIATE`` transaction (rolled
        back on an exception): reads and writes in it see no other process's writes in between."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def pack(self, obj: Any, meta: Mapping[str, Any] | None) -> tuple[bytes, str, list[tuple[str, tuple]]]:
        """``(blob, meta JSON, statements storing their shared texts)``: a request kept outside
        ``annotations`` (a Batch API line) as small as an annotation (:mod:`sflib.feedback.store_codec`)."""
        blob, meta_json, texts = store_codec.encode(obj, dict(meta or {}))
        return blob, meta_json, store_codec.texts_statements(texts)

    def unpack(self, pairs: Iterable[tuple[Any, Any]]) -> list[tuple[str, str]]:
        """What :meth:`pack` stored, back as ``(JSON, meta JSON)`` (plain JSON passes through)."""
        with self._lock:
            return store_codec.expand_pairs(self._conn, pairs)

    def reclaim(self) -> None:
        """Give the pages freed by deleted or shrunk rows back to the file system (stores created with
        incremental auto-vacuum, i.e. by this sflib; a no-op for older ones)."""
        with self._lock:
            # run through sqlite3_exec: a plain execute() frees one page and stops (11,290 pages stayed free
            # at 60,000 answers: 0.8 KB an answer)
            self._conn.executescript("PRAGMA incremental_vacuum;")

    def batches(self) -> pd.DataFrame:
        """Every Batch API job recorded in this store, newest last."""
        with self._lock:
            return pd.read_sql_query("SELECT * FROM batches ORDER BY created_at", self._conn)

    def batch_events(self) -> pd.DataFrame:
        """What went wrong with batch jobs (unknown custom_ids, truncated outputs, expiries ...)."""
        with self._lock:
            return pd.read_sql_query("SELECT * FROM batch_events ORDER BY id", self._conn)

    # ------------------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "AnnotationStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AnnotationStore({self.path!r})"


_encode_str = json.encoder.encode_basestring  # what json.dumps(..., ensure_ascii=False) writes for a str


def _fast_key_text(judge_model, template_version, params, messages, salt) -> str | None:
    """``canonical_json`` of a key's payload for the common shape (text judge/template/salt, chat messages
    of string ``role`` and ``content`` only), written directly: the same bytes (tests/test_store_size.py
    checks it), twice as fast at 125,000 keys. None for anything else (the general path is used)."""
    if not (isinstance(judge_model, str) and isinstance(template_version, str) and isinstance(messages, list)):
        return None
    parts = []
    for m in messages:
        if not (type(m) is dict and len(m) == 2 and type(m.get("role")) is str and type(m.get("content")) is str):
            return None
        parts.append('{"content":' + _encode_str(m["content"]) + ',"role":' + _encode_str(m["role"]) + "}")
    return ('{"judge":' + _encode_str(judge_model) + ',"messages":[' + ",".join(parts) + '],"params":'
            + canonical_json(dict(params or {})) + ',"salt":' + _encode_str(str(salt or ""))
            + ',"template_version":' + _encode_str(template_version) + "}")


def _loads(text: str | None) -> Any:
    return json.loads(text) if isinstance(text, (str, bytes)) else None  # NULL may come back as NaN


def _decode(row: dict) -> dict:
    for column in _JSON_COLUMNS:
        row[column] = _loads(row[column])
    row["valid"] = bool(row["valid"])
    return row
