"""Claims: which run is asking which item of an annotation store, so that two runs never pay twice.

Several processes may work on one store at once (a notebook and a CLI run, two notebooks, an array
of cluster jobs sharing an outputs folder). Each acquisition run registers itself in the store's
``runs`` table (pid, host, the process's start time, a heartbeat refreshed every
:data:`HEARTBEAT_S` seconds by a background thread) and, just before it sends a request, *claims*
the request's key in the ``claims`` table, in one ``BEGIN IMMEDIATE`` transaction that first checks
that

- no other run stored an answer for it (it *landed*: taken from the store). An ``ok`` answer counts
  whenever it was stored: the caller read the store before this run started, and an answer another run
  stored between that read and this run's start would otherwise be asked (and paid) again; any other
  row (failed, invalid) counts when it was stored since this run started;
- no other *live* run holds a claim on it (it is *busy*: left to that run, picked up from the
  store when it lands, or taken over if that run dies).

A run is live while its heartbeat is fresh (under :data:`STALE_S` seconds old) and, on the same
host, while its process exists (same pid *and* same process start time, so a reused pid does not
count). Claims of a dead or silent run are taken over; if that run had already sent the request
(an ``in_flight`` row of it), the request is counted as re-paid (the provider may have billed it).
A run's claims go when it ends (normally, on an exception or on Ctrl-C); a stored answer removes
its claim (:meth:`sflib.feedback.store.AnnotationStore.put_many`).

Example::

    with ClaimRun(store, judge.name) as run:
        if run.claim([key]):          # False: another live run asks it, or its answer landed
            run.mark_sent([key])      # just before the HTTP request goes out
            ...                       # ask, then store.put(key, ...) (removes the claim)
    run.counts                        # left_to_other_run, claims_taken_over, in_flight_repaid
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

log = logging.getLogger(__name__)

#: seconds between two heartbeats of a live run
HEARTBEAT_S = float(os.environ.get("SFLIB_CLAIM_HEARTBEAT_S", "2"))
#: a run whose heartbeat is older than this is taken for dead (its claims are taken over)
STALE_S = float(os.environ.get("SFLIB_CLAIM_STALE_S", "30"))
#: seconds between two looks at the store while waiting for items another run is asking
POLL_S = 0.5
#: a stored row another run wrote for a key this run was going to ask (see the module's docstring)
LANDED = "(status = 'ok' OR created_at >= ?)"


def _proc_start(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, from /proc), or None when it does not
    exist or is a zombie; ``""`` where /proc is not available."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    except OSError:
        return ""
    if fields[0] in ("Z", "X"):  # killed, not yet reaped by its parent: dead
        return None
    return fields[19]


def _pid_alive(pid: int, proc_start: str | None) -> bool:
    if os.path.isdir("/proc/self"):
        now = _proc_start(pid)
        return now is not None and (not proc_start or now == proc_start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ClaimRun:
    """This process's run on ``store`` for judge ``judge``: registered with a heartbeat, it claims
    keys before asking them. Use as a context manager (or call :meth:`close`)."""

    def __init__(self, store, judge: str):
        self.store, self.judge = store, judge
        self.run_id = uuid.uuid4().hex[:16]
        self.pid, self.host = os.getpid(), socket.gethostname()
        self.proc_start = _proc_start(self.pid) or ""
        self.started_at = time.time()
        self.counts = {"left_to_other_run": 0, "claims_taken_over": 0, "in_flight_repaid": 0}
        #: keys this run skipped because a live run held them (key -> "pid P on HOST")
        self.busy: dict[str, str] = {}
        self._alive_cache: dict[str, tuple[float, bool, str]] = {}
        self._stop = threading.Event()
        store.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?)",
                      (self.run_id, self.pid, self.host, self.proc_start, self.started_at,
                       self.started_at))
        self._thread = threading.Thread(target=self._beat, name=f"sflib-heartbeat-{self.run_id}",
                                        daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------------------- lifecycle
    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.store.execute("UPDATE runs SET heartbeat = ? WHERE run_id = ?",
                                   (time.time(), self.run_id))
            except Exception as e:  # store closed or locked for long: the next beat tries again
                log.debug("heartbeat of run %s failed: %s", self.run_id, e)

    def close(self) -> None:
        """Stop the heartbeat and drop this run's claims (``in_flight`` rows stay: they may be billed)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.store.executemany([("DELETE FROM claims WHERE run_id = ?", (self.run_id,)),
                                    ("DELETE FROM runs WHERE run_id = ?", (self.run_id,))])
        except Exception as e:  # the store is gone: its claims die with the run's heartbeat
            log.debug("could not release the claims of run %s: %s", self.run_id, e)

    def __enter__(self) -> "ClaimRun":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------------------------- owners
    def _owner(self, conn, run_id: str) -> tuple[bool, str]:
        """(alive, "pid P on HOST") of a run; cached for a second."""
        if run_id == self.run_id:
            return True, "this run"
        now = time.time()
        hit = self._alive_cache.get(run_id)
        if hit is not None and now - hit[0] < 1.0:
            return hit[1], hit[2]
        row = conn.execute("SELECT pid, host, proc_start, heartbeat FROM runs WHERE run_id = ?",
                           (run_id,)).fetchone()
        if row is None:  # ended, or a run of an older sflib that recorded no owner
            alive, who = False, f"run {run_id} (ended)"
        else:
            pid, host, proc_start, heartbeat = row
            who = f"pid {pid} on {host}"
            alive = now - heartbeat < STALE_S
            if alive and host == self.host:
                alive = _pid_alive(int(pid), proc_start)
        self._alive_cache[run_id] = (now, alive, who)
        return alive, who

    # -------------------------------------------------------------------------------- claims
    def claim(self, keys: list[str]) -> bool:
        """Claim every key (all or none, one transaction). False when one of them landed in the
        store since this run started or is claimed by another live run (see :attr:`busy`)."""
        return bool(self._claim(list(keys), all_or_none=True))

    def claim_each(self, keys: list[str]) -> set[str]:
        """Claim what can be claimed of ``keys`` (one transaction); returns the claimed keys."""
        return self._claim(list(keys), all_or_none=False)

    def _claim(self, keys: list[str], all_or_none: bool) -> set[str]:
        marks = ",".join("?" * len(keys))
        refused: set[str] = set()
        with self.store.transaction() as conn:
            refused.update(k for (k,) in conn.execute(
                f"SELECT key FROM annotations WHERE key IN ({marks}) AND {LANDED}",
                (*keys, self.started_at)))  # landed: answered by another run
            if refused and all_or_none:
                return set()
            taken_over: set[str] = set()
            repaid: set[str] = set()
            for table, dead in (("claims", taken_over), ("in_flight", repaid)):
                for key, run_id in conn.execute(f"SELECT key, run_id FROM {table} WHERE key IN ({marks})",
                                                keys).fetchall():
                    if run_id == self.run_id or key in refused:
                        continue
                    alive, who = self._owner(conn, run_id)
                    if alive:  # a live run asks it (an in-flight row alone: an older sflib)
                        self.busy[key] = who
                        refused.add(key)
                        if all_or_none:
                            return set()
                    else:
                        dead.add(key)
            claimed = [k for k in keys if k not in refused]
            now = time.time()
            conn.executemany("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?)",
                             [(k, self.judge, self.run_id, now) for k in claimed])
        self.counts["claims_taken_over"] += len(taken_over - refused)
        self.counts["in_flight_repaid"] += len(repaid - refused)
        for key in claimed:
            self.busy.pop(key, None)
        return set(claimed)

    def mark_sent(self, keys: list[str]) -> None:
        """Record ``keys`` as in flight (their request is being sent now: it may be billed)."""
        now = time.time()
        if len(keys) == 1:  # one autocommitted statement: cheap enough for every request
            self.store.execute("INSERT OR REPLACE INTO in_flight VALUES (?, ?, ?, ?)",
                               (keys[0], self.judge, self.run_id, now))
            return
        self.store.executemany([("INSERT OR REPLACE INTO in_flight VALUES (?, ?, ?, ?)",
                                 (k, self.judge, self.run_id, now)) for k in keys])

    def landed(self, keys: list[str]) -> dict[str, dict]:
        """Another run's stored rows of ``keys``: ``ok`` answers whenever stored, others stored since this run
        started (the rule :meth:`claim` refuses by: what it refuses is found here)."""
        rows = self.store.get_many(keys)
        return {k: r for k, r in rows.items() if r["status"] == "ok" or r["created_at"] >= self.started_at}

    def free(self, keys: list[str]) -> list[str]:
        """The keys no live run (other than this one) holds a claim or an in-flight request on."""
        keys = list(keys)
        held: set[str] = set()
        with self.store.transaction() as conn:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for table in ("claims", "in_flight"):
                    for key, run_id in conn.execute(
                            f"SELECT key, run_id FROM {table} WHERE key IN ({marks})", chunk):
                        if run_id != self.run_id and self._owner(conn, run_id)[0]:
                            held.add(key)
        return [k for k in keys if k not in held]

    def owners(self, keys) -> str:
        """Who holds ``keys`` (for a message): ``"pid 12 on host-a"`` or several, comma-separated."""
        return ", ".join(sorted({self.busy[k] for k in keys if k in self.busy})) or "another run"
