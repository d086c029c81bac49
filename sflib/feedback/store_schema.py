"""The tables of an annotation store file (:mod:`sflib.feedback.store`): their SQL schema, the columns of
``annotations``, and :func:`create_tables`, which creates them and upgrades a store written by an
older sflib in place (missing columns added, rows kept).

Tables: ``annotations`` (one row per cache key), ``in_flight`` (requests an online run sent and
has not stored yet), ``runs`` / ``claims`` (which run is asking which item, so that two runs on one
store never pay twice; see :mod:`sflib.feedback.claims`), and ``batches`` / ``batch_requests`` /
``batch_events`` (provider Batch API jobs, see :mod:`sflib.judges.batch`).
"""
from __future__ import annotations

import sqlite3

STATUSES = ("ok", "invalid", "failed")

#: columns of the ``annotations`` table, in order
COLUMNS = [
    "key", "judge", "model", "template_version", "params", "prompt", "meta", "raw", "value",
    "valid", "status", "error", "prompt_tokens", "completion_tokens", "latency_s", "attempts",
    "created_at", "soft", "logprobs",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS annotations (
    key               TEXT PRIMARY KEY,
    judge             TEXT NOT NULL,
    model             TEXT NOT NULL,
    template_version  TEXT NOT NULL,
    params            TEXT NOT NULL,   -- JSON: decoding parameters
    prompt            TEXT NOT NULL,   -- the rendered chat messages: JSON, or compressed (store_codec)
    meta              TEXT NOT NULL,   -- JSON: Request.meta (never sent to an API); long texts in `texts`
    raw               TEXT,            -- the judge's reply, verbatim (NULL when failed)
    value             TEXT,            -- JSON: the parsed value
    valid             INTEGER NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('ok', 'invalid', 'failed')),
    error             TEXT,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    latency_s         REAL NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 1,
    created_at        REAL NOT NULL,   -- unix time of the last write
    soft              REAL,
    logprobs          TEXT,
    batch             INTEGER          -- 1: answered through a provider Batch API job (priced at batch rates)
);
CREATE INDEX IF NOT EXISTS annotations_status ON annotations (status);
CREATE TABLE IF NOT EXISTS texts (    -- shared texts of stored requests (see sflib.feedback.store_codec)
    hash TEXT PRIMARY KEY,
    text TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS in_flight (
    key        TEXT PRIMARY KEY,
    judge      TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    started_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id     TEXT PRIMARY KEY,        -- one acquisition run (a process calling annotate/generate)
    pid        INTEGER NOT NULL,
    host       TEXT NOT NULL,
    proc_start TEXT,                    -- the process's start time (tells a reused pid apart)
    started_at REAL NOT NULL,
    heartbeat  REAL NOT NULL            -- unix time; refreshed while the run is alive
);
CREATE TABLE IF NOT EXISTS claims (
    key        TEXT PRIMARY KEY,        -- the annotation key being asked
    judge      TEXT NOT NULL,
    run_id     TEXT NOT NULL,           -- its owner (runs.run_id)
    claimed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS claims_run ON claims (run_id);
CREATE TABLE IF NOT EXISTS batches (
    local_id         TEXT PRIMARY KEY,  -- our name for the job, also the uploaded file's name
    judge            TEXT NOT NULL,
    template_version TEXT NOT NULL,
    endpoint         TEXT NOT NULL,
    state            TEXT NOT NULL,     -- intent | uploaded | submitted | collected
    input_file_id    TEXT,
    batch_id         TEXT,
    remote_status    TEXT,              -- the provider's status when last polled
    output_file_id   TEXT,
    error_file_id    TEXT,
    n_requests       INTEGER NOT NULL,
    round            INTEGER NOT NULL DEFAULT 0,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    owner            TEXT               -- runs.run_id of the run that uploads/creates it
);
CREATE TABLE IF NOT EXISTS batch_requests (
    local_id TEXT NOT NULL,
    key      TEXT NOT NULL,             -- the annotation key, also the line's custom_id
    body     TEXT NOT NULL,             -- JSON: the request line's body
    meta     TEXT NOT NULL,             -- JSON: Request.meta
    state    TEXT NOT NULL,             -- pending | done | resubmit
    error    TEXT,
    PRIMARY KEY (local_id, key)
);
CREATE INDEX IF NOT EXISTS batch_requests_key ON batch_requests (key);
-- which answers came through a batch (study status prices them at batch rates): read from this index,
-- not from the request lines (1.3 s -> 0.4 s at 50,000 answers)
CREATE INDEX IF NOT EXISTS batch_requests_state ON batch_requests (state, key);
CREATE TABLE IF NOT EXISTS batch_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    local_id   TEXT,
    kind       TEXT NOT NULL,           -- unknown_custom_id | truncated_output | expired | ...
    detail     TEXT,
    created_at REAL NOT NULL
);
"""

#: columns added after the first release: (name, SQL type), added to older stores on open
_ADDED_COLUMNS = [("soft", "REAL"), ("logprobs", "TEXT"), ("batch", "INTEGER")]
#: the same for other tables: {table: [(name, SQL type)]}
_ADDED_TABLE_COLUMNS = {"batches": [("owner", "TEXT")]}

_JSON_COLUMNS = ("params", "prompt", "meta", "value", "logprobs")


def create_tables(conn: sqlite3.Connection) -> None:
    """Create every table that is missing and add the columns an older store lacks (rows are kept)."""
    conn.executescript(_SCHEMA)
    have = {row[1] for row in conn.execute("PRAGMA table_info(annotations)")}
    for name, kind in _ADDED_COLUMNS:
        if name not in have:  # a store written by an older sflib: add the column, keep the rows
            conn.execute(f"ALTER TABLE annotations ADD COLUMN {name} {kind}")
    for table, added in _ADDED_TABLE_COLUMNS.items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, kind in added:
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
