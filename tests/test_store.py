"""AnnotationStore: keys, round-trip, resume after reopening, frames and Parquet export."""
import sqlite3

import pandas as pd
import pytest

from sflib.feedback.store import AnnotationStore

MESSAGES = [{"role": "user", "content": "Rate this on a scale of 1 to 7."}]


def _put(store, key, status="ok", **kw):
    fields = dict(judge="openai:m", model="m", template_version="v1", params={"temperature": 0},
                  messages=MESSAGES, status=status, raw="Score: 5", value=5, valid=status == "ok",
                  prompt_tokens=10, completion_tokens=3, latency_s=0.2)
    fields.update(kw)
    store.put(key, **fields)


def test_key_is_deterministic_and_sensitive_to_every_part():
    base = AnnotationStore.key("openai:m", "v1", {"temperature": 0, "max_tokens": 5}, MESSAGES)
    assert base == AnnotationStore.key("openai:m", "v1", {"max_tokens": 5, "temperature": 0}, MESSAGES)
    assert len(base) == 64
    others = {
        AnnotationStore.key("openai:m2", "v1", {"temperature": 0, "max_tokens": 5}, MESSAGES),
        AnnotationStore.key("openai:m", "v2", {"temperature": 0, "max_tokens": 5}, MESSAGES),
        AnnotationStore.key("openai:m", "v1", {"temperature": 1, "max_tokens": 5}, MESSAGES),
        AnnotationStore.key("openai:m", "v1", {"temperature": 0, "max_tokens": 5},
                            [{"role": "user", "content": "other"}]),
        AnnotationStore.key("openai:m", "v1", {"temperature": 0, "max_tokens": 5}, MESSAGES, salt="3"),
    }
    assert base not in others and len(others) == 5


def test_round_trip_and_resume_after_reopen(tmp_path):
    path = tmp_path / "sub" / "store.sqlite"
    store = AnnotationStore(path)
    mode = store._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    _put(store, "k1", value={"score": 5, "why": "ok"})
    _put(store, "k2", status="invalid", raw="no idea", value=None, error="reply could not be parsed")
    _put(store, "k3", status="failed", raw=None, value=None, error="RateLimitError: 429")
    got = store.get_many(["k1", "k2", "k3", "missing"])
    assert set(got) == {"k1", "k2", "k3"}
    assert got["k1"]["value"] == {"score": 5, "why": "ok"} and got["k1"]["valid"] is True
    assert got["k1"]["params"] == {"temperature": 0} and got["k1"]["prompt"] == MESSAGES
    assert got["k3"]["raw"] is None and got["k3"]["error"] == "RateLimitError: 429"
    store.close()  # no explicit flush anywhere: commits are per put

    reopened = AnnotationStore(path)
    assert reopened.count() == 3 and reopened.count("failed") == 1 and len(reopened) == 3
    # replacing a failure by a success keeps one row per key
    _put(reopened, "k3")
    assert reopened.count("failed") == 0 and reopened.count("ok") == 2
    assert reopened.failures().empty
    inv = reopened.invalid()
    assert list(inv["key"]) == ["k2"] and inv["raw"].iloc[0] == "no idea"
    summary = reopened.summary()
    assert summary.set_index("status")["n"].to_dict() == {"invalid": 1, "ok": 2}
    assert reopened.delete(["k2"]) == 1 and reopened.get("k2") is None
    with pytest.raises(ValueError, match="status"):
        _put(reopened, "bad", status="weird")
    with pytest.raises(ValueError, match="status"):
        reopened.count("weird")


def test_committed_rows_are_visible_to_another_connection_without_close(tmp_path):
    path = tmp_path / "s.sqlite"
    store = AnnotationStore(path)
    _put(store, "k1")
    # a second connection (as after a crash: nothing was closed) sees the committed row
    other = sqlite3.connect(path)
    assert other.execute("SELECT status FROM annotations WHERE key='k1'").fetchone() == ("ok",)
    other.close()


def test_to_frame_and_parquet_export(tmp_path):
    store = AnnotationStore(tmp_path / "s.sqlite")
    for i in range(5):
        _put(store, f"k{i}", value=i, template_version="v1" if i < 3 else "v2")
    df = store.to_frame(template_version="v1")
    assert len(df) == 3 and df["valid"].dtype == bool and sorted(df["value"]) == [0, 1, 2]
    path = store.export_parquet(tmp_path / "out" / "annotations.parquet")
    back = pd.read_parquet(path)
    assert len(back) == 5 and set(back["key"]) == {f"k{i}" for i in range(5)}
    assert back["prompt"].iloc[0].startswith("[{")  # JSON text


def test_memory_store_and_many_keys():
    store = AnnotationStore(":memory:")
    rows = [dict(key=f"k{i}", judge="j", model="m", template_version="v", params={},
                 messages=MESSAGES, status="ok", raw=str(i), value=i, valid=True) for i in range(1234)]
    assert store.put_many(rows) == 1234
    got = store.get_many([f"k{i}" for i in range(0, 1234, 2)])
    assert len(got) == 617 and got["k10"]["value"] == 10


def test_numpy_values_are_stored_as_plain_numbers(tmp_path):
    import numpy as np

    store = AnnotationStore(tmp_path / "s.sqlite")
    _put(store, "k", value=np.int64(6), params={"temperature": np.float32(0.5)})
    row = store.get("k")
    assert row["value"] == 6 and isinstance(row["value"], int) and row["params"] == {"temperature": 0.5}


def test_a_store_from_before_soft_verdicts_opens_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.execute("""CREATE TABLE annotations (key TEXT PRIMARY KEY, judge TEXT NOT NULL,
        model TEXT NOT NULL, template_version TEXT NOT NULL, params TEXT NOT NULL,
        prompt TEXT NOT NULL, meta TEXT NOT NULL, raw TEXT, value TEXT, valid INTEGER NOT NULL,
        status TEXT NOT NULL, error TEXT, prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0, latency_s REAL NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL)""")
    con.execute("INSERT INTO annotations VALUES ('k', 'j', 'm', 'v', '{}', '[]', '{}', 'Score: 5', "
                "'5', 1, 'ok', NULL, 1, 1, 0.1, 1, 0)")
    con.commit()
    con.close()
    store = AnnotationStore(path)
    row = store.get("k")
    assert row["value"] == 5 and row["soft"] is None and row["logprobs"] is None
    _put(store, "k2", soft=4.5, logprobs={"source": "logprobs", "mass": 0.9})
    assert store.get("k2")["soft"] == 4.5 and store.get("k2")["logprobs"]["mass"] == 0.9
    assert len(store.to_frame()) == 2


def test_in_flight_rows_are_cleared_by_their_answer(tmp_path):
    store = AnnotationStore(tmp_path / "s.sqlite")
    store.mark_in_flight("k1", judge="openai:m", run_id="r1")
    store.mark_in_flight("k2", judge="openai:m", run_id="r1")
    store.mark_in_flight("k3", judge="other", run_id="r1")
    assert list(store.in_flight("openai:m")["key"]) == ["k1", "k2"] and len(store.in_flight()) == 3
    _put(store, "k1")  # stored answer: no longer in flight
    assert list(store.in_flight("openai:m")["key"]) == ["k2"]
    assert store.clear_in_flight(["k2", "k3"]) == 2 and store.in_flight().empty
