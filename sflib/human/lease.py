"""Annotator names, the one-kernel-per-annotator lease, and the record of each annotator's item list.

Both live in two small extra tables in the annotation store's SQLite file (the ``annotations`` table
is not touched, so the store's schema stays as it is; :class:`~sflib.feedback.store.AnnotationStore` ignores
tables it does not know):

- ``human_leases(annotator, kind, pid, host, token, acquired_at, seen_at)``: who is annotating now.
  A second kernel that opens the same annotator and kind gets :class:`AnnotatorBusy` naming the
  other kernel's pid and host, and can take over with ``force=True`` (the first kernel's widget then
  refuses to write and says so). A lease whose process is gone (same host) or that was not used
  for ``STALE_AFTER_S`` (other host) is taken over quietly.
- ``human_sessions(annotator, kind, items_hash, item_ids, updated_at)``: the item list an annotator
  last worked on, so a changed list is detected (:class:`ItemListChange`).

An in-memory store (``":memory:"``) keeps both in this process instead.
"""
from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass, field

PREFIX = "human:"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")
STALE_AFTER_S = 12 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS human_leases (
    annotator TEXT NOT NULL, kind TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL,
    token TEXT NOT NULL, acquired_at REAL NOT NULL, seen_at REAL NOT NULL,
    PRIMARY KEY (annotator, kind));
CREATE TABLE IF NOT EXISTS human_sessions (
    annotator TEXT NOT NULL, kind TEXT NOT NULL, items_hash TEXT NOT NULL, item_ids TEXT NOT NULL,
    updated_at REAL NOT NULL, PRIMARY KEY (annotator, kind));
"""


class AnnotatorBusy(RuntimeError):
    """The annotator is already annotating this kind in another kernel."""


def normalise_name(name: str) -> str:
    """An annotator name as stored: lower case, spaces as ``-``, an optional ``human:`` prefix removed.

    Allowed: 1–40 characters ``a-z 0-9 _ . -``, starting with a letter or digit. Anything else is a
    :class:`ValueError` that says which characters are wrong and suggests a usable name.
    """
    if not isinstance(name, str):
        raise ValueError(f"annotator name must be text, got {type(name).__name__}")
    text = name.strip()
    if text.lower().startswith(PREFIX):
        text = text[len(PREFIX):]
    text = re.sub(r"\s+", "-", text.strip()).lower()
    if NAME_RE.match(text):
        return text
    ascii_ = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    suggestion = re.sub(r"[^a-z0-9_.-]+", "-", ascii_).strip("-._")[:40] or "annotator-1"
    bad = sorted({c for c in text if not re.match(r"[a-z0-9_.-]", c)})
    why = (f"characters {' '.join(repr(c) for c in bad)} are not allowed" if bad else
           "it must be 1-40 characters and start with a letter or digit")
    raise ValueError(f"annotator name {name!r}: {why} (use a-z, 0-9, '_', '.', '-'; e.g. {suggestion!r})")


def judge_name(annotator: str) -> str:
    """``human:<name>``, the judge name under which an annotator's answers are stored."""
    return PREFIX + normalise_name(annotator)


_MEMORY: dict[int, dict] = {}  # id(store) -> {"leases": {...}, "sessions": {...}} for ":memory:" stores


class _Tables:
    """The two extra tables of one store file (a connection of its own; WAL allows it)."""

    def __init__(self, store):
        self.store = store
        self.memory = store.path == ":memory:"
        if self.memory:
            self.mem = _MEMORY.setdefault(id(store), {"leases": {}, "sessions": {}})
        else:
            # any thread: ipykernel 7 handles widget messages (clicks, keys) on a thread other than the one
            # that ran the cell, so a thread-bound connection failed on the first key typed after a click
            self._lock = threading.RLock()
            self.conn = sqlite3.connect(store.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self.conn.executescript(_SCHEMA)

    def _execute(self, sql: str, args: tuple = ()):
        with self._lock:
            return self.conn.execute(sql, args)

    def _one(self, sql: str, args: tuple = ()):
        with self._lock:
            return self.conn.execute(sql, args).fetchone()

    def close(self) -> None:
        if not self.memory:
            self.conn.close()

    def lease(self, annotator: str, kind: str) -> dict | None:
        if self.memory:
            return self.mem["leases"].get((annotator, kind))
        row = self._one("SELECT pid, host, token, acquired_at, seen_at FROM human_leases "
                        "WHERE annotator = ? AND kind = ?", (annotator, kind))
        return None if row is None else dict(zip(("pid", "host", "token", "acquired_at", "seen_at"), row))

    def set_lease(self, annotator: str, kind: str, rec: dict) -> None:
        if self.memory:
            self.mem["leases"][(annotator, kind)] = dict(rec)
            return
        self._execute("INSERT OR REPLACE INTO human_leases VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (annotator, kind, rec["pid"], rec["host"], rec["token"], rec["acquired_at"],
                       rec["seen_at"]))

    def drop_lease(self, annotator: str, kind: str, token: str) -> None:
        if self.memory:
            if (self.mem["leases"].get((annotator, kind)) or {}).get("token") == token:
                del self.mem["leases"][(annotator, kind)]
            return
        self._execute("DELETE FROM human_leases WHERE annotator = ? AND kind = ? AND token = ?",
                      (annotator, kind, token))

    def session(self, annotator: str, kind: str) -> dict | None:
        if self.memory:
            return self.mem["sessions"].get((annotator, kind))
        row = self._one("SELECT items_hash, item_ids, updated_at FROM human_sessions "
                        "WHERE annotator = ? AND kind = ?", (annotator, kind))
        return None if row is None else {"items_hash": row[0], "item_ids": json.loads(row[1]), "updated_at": row[2]}

    def set_session(self, annotator: str, kind: str, items_hash: str, item_ids: list[str]) -> None:
        rec = {"items_hash": items_hash, "item_ids": list(item_ids), "updated_at": time.time()}
        if self.memory:
            self.mem["sessions"][(annotator, kind)] = rec
            return
        self._execute("INSERT OR REPLACE INTO human_sessions VALUES (?, ?, ?, ?, ?)",
                      (annotator, kind, items_hash, json.dumps(rec["item_ids"]), rec["updated_at"]))


def _alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


@dataclass
class Lease:
    """This kernel's claim on ``(annotator, kind)`` in one store; :meth:`check` before every write."""

    store: object
    annotator: str
    kind: str
    force: bool = False
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    note: str = ""

    def __post_init__(self):
        self.tables = _Tables(self.store)
        self.pid, self.host = os.getpid(), socket.gethostname()
        self.acquire()

    def acquire(self) -> None:
        now = time.time()
        held = self.tables.lease(self.annotator, self.kind)
        if held and held["token"] != self.token and not self.force:
            same_kernel = held["pid"] == self.pid and held["host"] == self.host
            if held["host"] == self.host:
                busy = not same_kernel and _alive(held["pid"])
            else:
                busy = now - held["seen_at"] < STALE_AFTER_S
            if busy:
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(held["acquired_at"]))
                raise AnnotatorBusy(
                    f"annotator {self.annotator!r} is already annotating {self.kind} in another kernel "
                    f"(pid {held['pid']} on host {held['host']}, since {since}). Shut that kernel down (in its "
                    f"notebook: Kernel > Shut Down Kernel), use another annotator name, or take over: set "
                    f"force = True in the parameters cell of notebook 08 (HumanAnnotator(..., force=True) in "
                    f"Python) and run it again; the other kernel's answers so far are kept, its widget stops "
                    f"writing.")
            if not same_kernel:
                self.note = (f"took over a stale lease of pid {held['pid']} on {held['host']} "
                             "(that process is gone or idle)")
        elif held and held["token"] != self.token and self.force:
            self.note = f"took over from pid {held['pid']} on {held['host']} (force=True)"
        self.tables.set_lease(self.annotator, self.kind, dict(pid=self.pid, host=self.host, token=self.token,
                                                              acquired_at=now, seen_at=now))

    def check(self) -> None:
        """Raise :class:`AnnotatorBusy` if another kernel (or annotator object) took this lease over."""
        held = self.tables.lease(self.annotator, self.kind)
        if held is None:  # released (e.g. closed): claim it again
            self.acquire()
            return
        if held["token"] != self.token:
            raise AnnotatorBusy(
                f"annotator {self.annotator!r} ({self.kind}) was opened again elsewhere (pid {held['pid']} on "
                f"{held['host']}); this window no longer writes or undoes. Your earlier answers are in the store; "
                f"continue in the newer window.")
        held["seen_at"] = time.time()
        self.tables.set_lease(self.annotator, self.kind, held)

    def release(self) -> None:
        self.tables.drop_lease(self.annotator, self.kind, self.token)

    def close(self) -> None:
        self.release()
        self.tables.close()
