"""The annotation engine: caching, resume, failures kept and retried, accounting, judge registry."""
import pytest

from sflib.core import costs
from sflib.feedback.annotate import RESULT_COLUMNS, annotate, format_stats
from sflib.judges import get_judge, known_judges, register_judge
from sflib.judges.base import Completion, Judge, Request
from sflib.feedback.store import AnnotationStore


def parse_score(text):
    head = text.split(":")
    if len(head) == 2 and head[1].strip().isdigit():
        return int(head[1]), True
    return None, False


class ScriptedJudge(Judge):
    """Answers 'Score: n' for prompt n; fails or garbles the prompts it is told to, counts calls."""

    name = "scripted:m"
    model = "gpt-4o-mini"
    params = {"temperature": 0.0}

    def __init__(self, fail=(), garble=(), crash_after=None):
        self.fail, self.garble, self.crash_after = set(fail), set(garble), crash_after
        self.calls = []

    def complete(self, requests):
        for i, r in reversed(list(enumerate(requests))):  # out of order on purpose
            if self.crash_after is not None and len(self.calls) >= self.crash_after:
                raise RuntimeError("connection pool exploded")
            content = r.messages[-1]["content"]
            self.calls.append(content)
            if content in self.fail:
                yield i, Completion(error="APIStatusError: 500", attempts=3)
            elif content in self.garble:
                yield i, Completion(text="I refuse", prompt_tokens=10, completion_tokens=2)
            else:
                yield i, Completion(text=f"Score: {content}", prompt_tokens=100, completion_tokens=10,
                                    latency_s=0.01)


def reqs(contents, salts=None):
    return [Request([{"role": "user", "content": str(c)}],
                    meta={} if salts is None else {"cache_salt": salts[i]})
            for i, c in enumerate(contents)]


def run(judge, requests, store, **kw):
    return annotate(judge, requests, store=store, template_version="rating-v1", parse=parse_score,
                    progress=False, **kw)


def test_order_columns_stats_and_cache_hits(tmp_path):
    store = AnnotationStore(tmp_path / "s.sqlite")
    judge = ScriptedJudge()
    df = run(judge, reqs([3, 1, 2, 3]), store)  # duplicate request asked once
    assert list(df.columns) == RESULT_COLUMNS
    assert list(df["value"]) == [3, 1, 2, 3] and df["valid"].all() and not df["cached"].any()
    assert len(judge.calls) == 3
    s = df.attrs["stats"]
    assert (s["requests"], s["called"], s["cached"], s["ok"]) == (4, 3, 0, 4)
    assert (s["prompt_tokens"], s["completion_tokens"]) == (300, 30)
    assert s["cost_usd"] == pytest.approx(costs.cost("gpt-4o-mini", 300, 30))
    assert "4 requests: 4 ok" in format_stats(s)

    again = ScriptedJudge()
    df2 = run(again, reqs([1, 2, 3, 4]), store)
    assert again.calls == ["4"]  # cache hits cost zero calls
    assert list(df2["cached"]) == [True, True, True, False] and list(df2["value"]) == [1, 2, 3, 4]
    assert df2.attrs["stats"]["cached"] == 3 and df2.attrs["stats"]["prompt_tokens"] == 100


def test_cache_salt_and_template_version_are_part_of_the_key(tmp_path):
    store = AnnotationStore(tmp_path / "s.sqlite")
    judge = ScriptedJudge()
    df = run(judge, reqs([5, 5, 5], salts=[0, 1, 0]), store)
    assert len(judge.calls) == 2 and df["key"].nunique() == 2
    annotate(judge, reqs([5]), store=store, template_version="rating-v2", parse=parse_score,
             progress=False)
    assert len(judge.calls) == 3


def test_failures_and_invalid_are_stored_and_retried(tmp_path):
    store = AnnotationStore(tmp_path / "s.sqlite")
    df = run(ScriptedJudge(fail={"2"}, garble={"3"}), reqs([1, 2, 3]), store)
    assert list(df["status"]) == ["ok", "failed", "invalid"]
    assert df["error"].iloc[1] == "APIStatusError: 500" and df["raw"].iloc[2] == "I refuse"
    assert store.count() == 3 and list(store.failures()["key"]) == [df["key"].iloc[1]]

    judge = ScriptedJudge()
    df2 = run(judge, reqs([1, 2, 3]), store)
    assert judge.calls == ["2"]  # failure retried, invalid kept, ok cached
    assert list(df2["status"]) == ["ok", "ok", "invalid"]

    judge = ScriptedJudge()
    df3 = run(judge, reqs([1, 2, 3]), store, retry_invalid=True)
    assert judge.calls == ["3"] and df3["valid"].all() and store.count("ok") == 3


def test_parser_that_raises_keeps_the_reply_as_invalid(tmp_path):
    def bad_parse(text):
        raise KeyError("boom")

    df = annotate(ScriptedJudge(), reqs([1]), store=None, template_version="v", parse=bad_parse,
                  progress=False)
    assert df["status"].iloc[0] == "invalid" and "KeyError" in df["error"].iloc[0]
    assert df["raw"].iloc[0] == "Score: 1"


def test_judge_crash_mid_run_stores_the_rest_as_failed(tmp_path):
    store = AnnotationStore(tmp_path / "s.sqlite")
    df = run(ScriptedJudge(crash_after=2), reqs(range(5)), store)
    assert (df["status"] == "ok").sum() == 2 and (df["status"] == "failed").sum() == 3
    assert df.loc[df.status == "failed", "error"].str.contains("connection pool exploded").all()
    assert store.count() == 5
    judge = ScriptedJudge()
    assert run(judge, reqs(range(5)), store)["valid"].all() and len(judge.calls) == 3


def test_configuration_error_before_any_answer_raises():
    class NoKey(ScriptedJudge):
        def complete(self, requests):
            raise ValueError("OPENAI_API_KEY is not set")
            yield  # pragma: no cover

    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        run(NoKey(), reqs([1]), None)


def test_missing_completions_become_failures(tmp_path):
    class Lazy(ScriptedJudge):
        def complete(self, requests):
            yield 0, Completion(text="Score: 1")
            yield 0, Completion(text="Score: 9")  # duplicate index ignored

    df = run(Lazy(), reqs([1, 2]), AnnotationStore(tmp_path / "s.sqlite"))
    assert list(df["status"]) == ["ok", "failed"] and list(df["value"])[0] == 1
    assert "no completion" in df["error"].iloc[1]


def test_costs_table_register_and_env_file(tmp_path, monkeypatch):
    assert costs.price("openai:gpt-4o-mini-2024-07-18") == costs.PRICES["gpt-4o-mini"]
    assert costs.cost("local:smollm2", 10**6, 10**6) == 0.0
    assert costs.cost("no-such-model", 10, 10) is None
    costs.register_price("my-model", 1.0, 2.0)
    assert costs.cost("openai:my-model", 10**6, 10**6) == pytest.approx(3.0)
    prices = tmp_path / "prices.json"
    prices.write_text('{"file-model": {"input_per_m": 4, "output_per_m": 8}, "gpt-4o": [1, 1]}')
    monkeypatch.setenv("SFLIB_PRICES", str(prices))
    assert costs.price("file-model") == (4.0, 8.0) and costs.price("gpt-4o") == (1.0, 1.0)
    df = annotate(ScriptedJudge(), reqs([1]), store=None, template_version="v", parse=parse_score,
                  progress=False)
    assert df.attrs["stats"]["cost_usd"] == pytest.approx(costs.cost("gpt-4o-mini", 100, 10))


def test_unknown_price_gives_nan_cost():
    class Unknown(ScriptedJudge):
        name, model = "scripted:unknown", "mystery"

    df = run(Unknown(), reqs([1]), None)
    assert df.attrs["stats"]["cost_usd"] != df.attrs["stats"]["cost_usd"]  # NaN


def test_judge_registry():
    judge = ScriptedJudge()
    assert get_judge(judge) is judge
    register_judge("scripted", lambda rest, **kw: ScriptedJudge(**kw))
    assert "scripted" in known_judges() and {"openai", "local", "recorded"} <= set(known_judges())
    assert isinstance(get_judge("scripted:anything", fail={"1"}), ScriptedJudge)
    with pytest.raises(ValueError, match="unknown provider 'nope'.*openai"):
        get_judge("nope:x")
    with pytest.raises(ValueError, match="expected '<provider>:<model>'"):
        get_judge("gtp-4o")
    with pytest.raises(ValueError, match="without ':'"):
        register_judge("a:b", lambda rest: judge)


def test_interrupt_closes_the_judge_and_keeps_what_was_stored(tmp_path):
    closed = []

    class Slow(ScriptedJudge):
        def complete(self, requests):
            try:
                for i in range(len(requests)):
                    yield i, Completion(text=f"Score: {i + 1}")
            finally:
                closed.append(True)  # an HTTP judge stops its requests here

    def parse_until_ctrl_c(text):
        if text == "Score: 2":
            raise KeyboardInterrupt  # the user presses Ctrl-C while the judge is mid-run
        return parse_score(text)

    store = AnnotationStore(tmp_path / "s.sqlite")
    with pytest.raises(KeyboardInterrupt) as info:  # the traceback keeps annotate's frame alive
        annotate(Slow(), reqs([1, 2, 3]), store=store, template_version="rating-v1",
                 parse=parse_until_ctrl_c, progress=False)
    assert info.traceback and closed == [True] and store.count("ok") == 1
    judge = ScriptedJudge()
    assert run(judge, reqs([1, 2, 3]), store)["valid"].all() and sorted(judge.calls) == ["2", "3"]


def test_soft_verdict_without_logprobs_is_the_text_verdict_and_stored(tmp_path):
    from sflib.feedback.parsing import parse_score as real_parse

    store = AnnotationStore(tmp_path / "s.sqlite")
    df = annotate(ScriptedJudge(garble={"2"}), reqs([5, 2]), store=store, template_version="v",
                  parse=real_parse, progress=False)
    assert df["soft"].iloc[0] == 5.0 and df["soft_source"].iloc[0] == "text"
    assert df["soft"].isna().iloc[1]  # an unparsable reply has no soft verdict either
    assert df.attrs["stats"]["logprobs_missing"] == 0  # this judge never asked for logprobs
    row = store.get(df["key"].iloc[0])
    assert row["soft"] == 5.0 and row["logprobs"]["reason"] == "provider returned no logprobs"
    custom = annotate(ScriptedJudge(), reqs([3]), store=None, template_version="v", parse=real_parse,
                      progress=False, soft=lambda logprobs, value: (value * 10, {"source": "mine"}))
    assert custom["soft"].iloc[0] == 30 and custom["soft_source"].iloc[0] == "mine"
    none = annotate(ScriptedJudge(), reqs([3]), store=None, template_version="v", parse=real_parse,
                    progress=False, soft=False)
    assert none["soft"].isna().all() and none.attrs["stats"]["in_flight_repaid"] == 0
