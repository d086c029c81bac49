"""The annotation store keeps a request small (issue 22: <= 1.5 KB per answer) and gives it back exactly."""
from __future__ import annotations

import json
import os
import sqlite3

import pytest

from sflib.core import data as d
from sflib.feedback.rankings import ranking_request
from sflib.feedback.ratings import rating_request
from sflib.feedback.store import AnnotationStore
from sflib.feedback.store_codec import MAGIC


def _instructions(n):
    path = os.path.join(os.path.dirname(__file__), "..", "data", "original", "instructions", "natural_instructions.json")
    rows = json.load(open(path, encoding="utf-8"))[:n]
    return [(r["instruction"], d.clean_input(r.get("input"))) for r in rows]


def _requests(n_instructions=40, k=5):
    reqs = []
    for j, (ins, inp) in enumerate(_instructions(n_instructions)):
        responses = [f"Response {s} to instruction {j}: " + "a plausible answer of some length. " * 8 for s in range(k)]
        reqs += [rating_request(ins, inp, r) for r in responses]
        reqs += [ranking_request(ins, inp, responses[a], responses[b], order)
                 for a in range(k) for b in range(a + 1, k) for order in ("12", "21")]
    return reqs


def _fill(store, reqs):
    store.put_many([dict(key=f"k{i}", judge="openai:gpt", model="gpt", template_version="v1",
                         params={"temperature": 0}, messages=r.messages, meta=r.meta, status="ok",
                         raw="Score: 5\nReasoning: fine.", value=5, valid=True, prompt_tokens=900,
                         completion_tokens=12) for i, r in enumerate(reqs)])


def test_round_trip_is_exact(tmp_path):
    reqs = _requests(3)
    store = AnnotationStore(tmp_path / "s.sqlite")
    _fill(store, reqs)
    got = store.get_many([f"k{i}" for i in range(len(reqs))])
    for i, r in enumerate(reqs):
        assert got[f"k{i}"]["prompt"] == r.messages and got[f"k{i}"]["meta"] == r.meta
    frame = store.to_frame(decode=False)  # JSON text, as before (sflib.human.session decodes it itself)
    assert json.loads(frame.set_index("key").loc["k0", "prompt"]) == reqs[0].messages
    raw = sqlite3.connect(tmp_path / "s.sqlite").execute("SELECT prompt, meta FROM annotations WHERE key='k0'").fetchone()
    assert bytes(raw[0]).startswith(MAGIC) and reqs[0].meta["instruction"] not in raw[1]


def test_old_plain_json_rows_still_read(tmp_path):
    store = AnnotationStore(tmp_path / "s.sqlite")
    msgs = [{"role": "user", "content": "hi"}]
    store._conn.execute("INSERT INTO annotations (key, judge, model, template_version, params, prompt, meta, valid, "
                        "status, created_at) VALUES ('old', 'j', 'm', 'v', '{}', ?, '{\"kind\":\"rating\"}', 1, 'ok', 0)",
                        (json.dumps(msgs),))
    assert store.get("old")["prompt"] == msgs and store.get("old")["meta"] == {"kind": "rating"}


def test_bytes_per_answer_under_1_5_kb(tmp_path):
    reqs = _requests(40)  # 40 SuperNI instructions x (5 ratings + 20 ranking calls) = 1,000 answers
    path = tmp_path / "s.sqlite"
    store = AnnotationStore(path)
    _fill(store, reqs)
    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store._conn.execute("VACUUM")
    store.close()
    per_answer = os.path.getsize(path) / len(reqs)
    plain = sum(len(json.dumps(r.messages)) + len(json.dumps(r.meta)) for r in reqs) / len(reqs)
    print(f"{per_answer:.0f} bytes per answer, {plain:.0f} as plain JSON")
    assert per_answer <= 1536, (per_answer, plain)
    assert plain > 3 * per_answer  # what the rows would take as plain JSON


def test_batch_lines_are_packed_the_same_way(tmp_path):
    store = AnnotationStore(tmp_path / "s.sqlite")
    r = _requests(1)[7]
    body = {"model": "gpt", "messages": r.messages, "temperature": 0}
    blob, meta, statements = store.pack(body, r.meta)
    store.executemany(statements)
    assert len(blob) < len(json.dumps(body)) / 3
    (text, meta_text), = store.unpack([(blob, meta)])
    assert json.loads(text) == body and json.loads(meta_text) == r.meta


@pytest.mark.parametrize("case", range(6))
def test_fast_key_is_the_canonical_key(case):
    import hashlib

    from sflib.feedback.store import canonical_json

    messages = [[{"role": "system", "content": "Judge.\n"}, {"role": "user", "content": 'é "q" \\ \t \u2028 ✓ <b>'}],
                [{"content": "x", "role": "user"}], [], [{"role": "user", "content": "x", "name": "n"}],
                [{"role": "user", "content": ["part"]}], [{"role": "user", "content": "\x00\x1f"}]][case]
    payload = {"judge": "openai:gpt-4o-mini", "template_version": "rating_v1@abc", "messages": messages,
               "params": {"temperature": 0, "logprobs": True, "top_logprobs": 5}, "salt": "repeat-1"}
    want = hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()
    assert AnnotationStore.key("openai:gpt-4o-mini", "rating_v1@abc", payload["params"], messages, "repeat-1") == want


def test_collected_batch_lines_keep_no_copy_of_the_request(fake_openai_factory, tmp_path):
    from sflib.feedback.annotate import annotate
    from sflib.feedback.parsing import parse_score
    from sflib.judges.openai_judge import OpenAIJudge

    server = fake_openai_factory()
    store = AnnotationStore(tmp_path / "s.sqlite")
    reqs = [r for r in _requests(3) if r.meta["kind"] == "rating"][:10]
    judge = OpenAIJudge("gpt-4o-mini", base_url=server.url, api_key="sk-test", timeout=5)
    df = annotate(judge, reqs, store=store, template_version="v1", parse=parse_score, progress=False,
                  mode="batch", batch={"poll_s": 0.02})
    assert (df["status"] == "ok").all()
    assert store.execute("SELECT COUNT(*) FROM batch_requests")[0][0] == 0  # collected lines are dropped
    assert store.execute("SELECT COUNT(*) FROM annotations WHERE batch = 1")[0][0] == 10  # priced at batch rates
    assert store.execute("SELECT n_requests, state FROM batches") == [(10, "collected")]  # the job stays on record
    assert store.execute("PRAGMA freelist_count")[0][0] == 0  # the lines' pages went back to the disk
    got = store.get_many(df["key"])  # the request itself stays in its annotation
    assert [got[k]["prompt"] for k in df["key"]] == [r.messages for r in reqs]
    assert store.execute("PRAGMA auto_vacuum")[0][0] == 2  # incremental: freed pages go back to the disk


def test_reclaim_gives_every_freed_page_back(tmp_path):
    """A plain ``execute("PRAGMA incremental_vacuum")`` frees one page and stops; reclaim() frees them all."""
    path = tmp_path / "s.sqlite"
    store = AnnotationStore(path)
    store.execute("CREATE TABLE scratch (x TEXT)")
    with store.transaction() as conn:
        conn.executemany("INSERT INTO scratch VALUES (?)", [("x" * 2000,) for _ in range(2000)])
    store.execute("DELETE FROM scratch")
    assert store.execute("PRAGMA freelist_count")[0][0] > 900
    store.reclaim()
    assert store.execute("PRAGMA freelist_count")[0][0] == 0
    store.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert path.stat().st_size < 200_000  # the ~4 MB of deleted rows left the file
    store.close()
