"""Batch mode on a busy account: a resumed job finds its file and batch on any page of the provider's
lists (never re-uploads or re-creates), a fresh job lists nothing, and a create call whose reply is
lost (a 500 or a timeout after the batch was created) is not sent again."""
import openai
import pytest

from sflib.judges import batch as batch_mod
from sflib.feedback.store import AnnotationStore
from test_batch import N, SimulatedKill, judge_for, run

OTHERS = 150  # more than one page (100) of batches.list


@pytest.fixture(autouse=True)
def no_hooks():
    batch_mod.HOOKS.clear()
    yield
    batch_mod.HOOKS.clear()


def killed_at(server, path, point):
    """A run that dies at ``point`` (nothing after the hook runs)."""
    def die(**info):
        raise SimulatedKill(point)

    batch_mod.HOOKS[point] = die
    store = AnnotationStore(path)
    with pytest.raises(SimulatedKill):
        run(judge_for(server), store)
    store.close()
    batch_mod.HOOKS.clear()


def ours_once(server, df):
    ids = server.batch.batch_custom_ids
    return all(ids[key] == 1 for key in df["key"]) and len(df) == N


def test_fake_lists_page_like_openai(fake_openai_factory):
    server = fake_openai_factory()
    server.batch.add_other_batches(OTHERS)
    client = openai.OpenAI(base_url=server.url, api_key="sk-test")
    page = client.batches.list(limit=100)
    assert len(page.data) == 100 and page.has_more and page.data[0].id == f"batch_{OTHERS:06d}"
    assert page.first_id == page.data[0].id and page.last_id == page.data[-1].id
    ids = [b.id for b in client.batches.list(limit=100)]  # iterating fetches the next pages
    assert ids == [f"batch_{i:06d}" for i in range(OTHERS, 0, -1)]
    assert server.batch.list_calls["batches"] == 1 + 2
    assert len(client.batches.list().data) == 20  # OpenAI's default page
    files = client.files.list(purpose="batch", order="asc", limit=7)
    assert [f.filename for f in files.data] == [f"other-{i}.jsonl" for i in range(7)] and files.has_more


def test_resume_finds_its_batch_behind_more_than_a_page_of_newer_ones(fake_openai_factory, tmp_path):
    server = fake_openai_factory(batch_delay=0.2)
    path = tmp_path / "s.sqlite"
    killed_at(server, path, "created")  # created, its id not recorded
    assert (server.batch.uploads, server.batch.batches_created) == (1, 1)
    server.batch.add_other_batches(OTHERS)  # the account goes on: ours is now on page 2

    store = AnnotationStore(path)
    df = run(judge_for(server), store)
    assert (df["status"] == "ok").all() and store.count("ok") == N
    assert server.batch.uploads == 1 and server.batch.batches_created == 1 + OTHERS  # none re-created
    assert ours_once(server, df)
    assert list(store.batches()["batch_id"]) == ["batch_000001"]
    assert server.batch.list_calls["batches"] == 2  # paged on until it was found


def test_resume_finds_its_file_behind_more_than_a_page_of_newer_ones(fake_openai_factory, tmp_path):
    server = fake_openai_factory()
    path = tmp_path / "s.sqlite"
    killed_at(server, path, "uploaded")  # uploaded, its file id not recorded
    server.batch.add_other_batches(10_000, files_only=True)  # files.list pages hold 10,000
    store = AnnotationStore(path)
    df = run(judge_for(server), store)
    assert (df["status"] == "ok").all() and ours_once(server, df)
    assert server.batch.uploads == 1 and server.batch.batches_created == 1
    assert list(store.batches()["input_file_id"]) == ["file-000001"]
    assert server.batch.list_calls["files"] == 2 and server.batch.list_calls["batches"] == 0


def test_a_fresh_job_lists_nothing(fake_openai_factory, tmp_path):
    server = fake_openai_factory()
    server.batch.add_other_batches(OTHERS)
    df = run(judge_for(server), AnnotationStore(tmp_path / "s.sqlite"))
    assert (df["status"] == "ok").all() and ours_once(server, df)
    assert server.batch.batches_created == 1 + OTHERS and sum(server.batch.list_calls.values()) == 0


@pytest.mark.parametrize("fault", ["500", "hang"])
def test_a_lost_create_reply_is_not_paid_twice(fake_openai_factory, tmp_path, fault):
    server = fake_openai_factory(batch_create_faults=["ok"] * OTHERS + [fault], hang_s=1.5)
    server.batch.add_other_batches(OTHERS)
    before = server.batch.batches_created
    judge = judge_for(server)
    judge.timeout = 0.5  # shorter than the hang
    store = AnnotationStore(tmp_path / "s.sqlite")
    df = run(judge, store)
    assert (df["status"] == "ok").all() and ours_once(server, df)
    assert server.batch.batches_created == before + 1
    events = store.batch_events()
    assert list(events["kind"]) == ["create_reply_lost"]
    assert f"batch_{before + 1:06d}" in events["detail"].iloc[0]


def test_a_refused_create_is_not_retried(fake_openai_factory, tmp_path):
    server = fake_openai_factory()
    store = AnnotationStore(tmp_path / "s.sqlite")
    real = batch_mod.BatchRun._create

    def no_such_file(self, job):
        job["input_file_id"] = "file-nope"  # the server answers 400: nothing was created
        return real(self, job)

    batch_mod.BatchRun._create = no_such_file
    try:
        # one line naming the step and the cause, not the client's traceback
        with pytest.raises(batch_mod.BatchError, match=r"batches.create failed: bad request \(400\)"):
            run(judge_for(server), store)
    finally:
        batch_mod.BatchRun._create = real
    assert server.batch.batches_created == 0 and sum(server.batch.list_calls.values()) == 0
