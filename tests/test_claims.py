"""Claims (sflib.feedback.claims): a live run's claims are respected, a dead or silent run's are
taken over (its in-flight requests counted as re-paid), landed answers are not asked again, and a
run's claims go when it ends."""
import subprocess
import sys
import time

from sflib.feedback import claims
from sflib.feedback.claims import ClaimRun
from sflib.feedback.store import AnnotationStore


def _put(store, key):
    store.put(key, judge="j", model="m", template_version="v", params={}, messages=[],
              status="ok", raw="Score: 5", value=5, valid=True)


def test_live_claims_are_respected_and_released_on_close(tmp_path):
    a_store, b_store = AnnotationStore(tmp_path / "s.sqlite"), AnnotationStore(tmp_path / "s.sqlite")
    a, b = ClaimRun(a_store, "j"), ClaimRun(b_store, "j")
    assert a.claim(["k1", "k2"])
    assert not b.claim(["k1"]) and b.claim_each(["k1", "k3"]) == {"k3"}
    assert "pid" in b.owners(["k1"]) and b.free(["k1", "k2", "k4"]) == ["k4"]
    _put(a_store, "k1")  # a's answer lands: its claim goes with it
    assert not b.claim(["k1"]) and set(b.landed(["k1", "k2"])) == {"k1"}
    a.close()
    assert b.claim(["k2"])  # released, never sent: taken without counting anything
    assert b.counts == {"left_to_other_run": 0, "claims_taken_over": 0, "in_flight_repaid": 0}
    b.close()
    assert a_store.execute("SELECT COUNT(*) FROM claims")[0][0] == 0
    assert a_store.execute("SELECT COUNT(*) FROM runs")[0][0] == 0


def test_an_answer_stored_just_before_the_run_started_is_not_asked_again(tmp_path):
    """The caller reads the store, then starts its run: an answer another run stored in between is older than
    this run's start but must still count as landed (seen under load in tests/test_two_runs.py: 2 paid twice)."""
    store = AnnotationStore(tmp_path / "s.sqlite")
    _put(store, "ok-before")  # stored after the caller's read, before the run started
    store.put("failed-before", judge="j", model="m", template_version="v", params={}, messages=[],
              status="failed", error="timeout")  # an old failure: the caller means to ask it again
    time.sleep(0.01)
    with ClaimRun(store, "j") as run:
        assert not run.claim(["ok-before"]) and run.claim_each(["ok-before", "failed-before"]) == {"failed-before"}
        assert set(run.landed(["ok-before", "failed-before"])) == {"ok-before"}


def test_a_dead_runs_claims_and_in_flight_requests_are_taken_over(tmp_path):
    store = AnnotationStore(tmp_path / "s.sqlite")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    now = time.time()
    import socket

    store.execute("INSERT INTO runs VALUES ('dead', ?, ?, '1', ?, ?)",
                  (int(dead), socket.gethostname(), now, now))  # fresh heartbeat, process gone
    store.execute("INSERT INTO claims VALUES ('k1', 'j', 'dead', ?)", (now,))
    store.execute("INSERT INTO claims VALUES ('k2', 'j', 'dead', ?)", (now,))
    store.mark_in_flight("k2", judge="j", run_id="dead")  # sent: the provider may have billed it
    store.mark_in_flight("k3", judge="j", run_id="older-sflib")  # a run that recorded no owner
    with ClaimRun(store, "j") as run:
        assert run.claim_each(["k1", "k2", "k3"]) == {"k1", "k2", "k3"}
        assert run.counts["claims_taken_over"] == 2 and run.counts["in_flight_repaid"] == 2


def test_a_silent_run_is_dead_after_the_stale_time(tmp_path, monkeypatch):
    import os
    import socket

    store = AnnotationStore(tmp_path / "s.sqlite")
    old = time.time() - claims.STALE_S - 1
    # this very process, but its heartbeat stopped long ago (e.g. another host's run that froze)
    store.execute("INSERT INTO runs VALUES ('silent', ?, ?, '', ?, ?)",
                  (os.getpid(), socket.gethostname() + "-elsewhere", old, old))
    store.execute("INSERT INTO claims VALUES ('k1', 'j', 'silent', ?)", (old,))
    with ClaimRun(store, "j") as run:
        assert run.claim(["k1"]) and run.counts["claims_taken_over"] == 1


def test_the_heartbeat_keeps_a_run_alive(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "HEARTBEAT_S", 0.05)
    store = AnnotationStore(tmp_path / "s.sqlite")
    with ClaimRun(store, "j") as run:
        first = store.execute("SELECT heartbeat FROM runs WHERE run_id = ?", (run.run_id,))[0][0]
        time.sleep(0.3)
        later = store.execute("SELECT heartbeat FROM runs WHERE run_id = ?", (run.run_id,))[0][0]
    assert later > first
