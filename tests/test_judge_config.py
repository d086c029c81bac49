"""Judges and policies as YAML files (sflib.judges.config) and the CLI's request-limit overrides."""

import pandas as pd
import pytest

from sflib import io as sfio
from sflib.judges import get_judge
from sflib.judges.config import KEYS, ConfigError, known_names, resolve
from sflib.judges.openai_judge import OpenAIJudge


def _run_cli(capsys, *args):
    from sflib.cli import main

    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_shipped_judges_and_policies_resolve_with_prices():
    cfg = resolve("judge", "gpt-4o-mini")
    assert cfg["provider"] == "openai" and cfg["model"] == "gpt-4o-mini" and cfg["source"].endswith("gpt-4o-mini.yaml")
    assert (cfg["price_input_per_mtok"], cfg["price_output_per_mtok"]) == (0.15, 0.60)
    assert cfg["price_batch_input_per_mtok"] == 0.075
    assert resolve("judge", "gpt-4o")["price_output_per_mtok"] == 10.0
    llama = resolve("judge", "smollm2-llamacpp")
    assert llama["base_url_env"] and llama["price_input_per_mtok"] == 0.0
    assert resolve("judge", "recorded")["provider"] == "recorded"
    assert {"gpt-4o-mini", "gpt-4o", "smollm2-llamacpp", "recorded"} <= set(known_names("judge"))
    assert resolve("policy", "smollm2")["provider"] == "local"
    qwen = resolve("policy", "qwen2.5-7b-vllm")
    assert qwen["provider"] == "openai" and qwen["model"] == "Qwen/Qwen2.5-7B-Instruct"


def test_shorthand_gives_the_same_shape_with_defaults():
    short = resolve("judge", "openai:gpt-4.1")
    named = resolve("judge", "gpt-4o-mini")
    assert set(short) == set(named) and set(short) <= set(KEYS)
    assert short["source"] == "shorthand" and short["concurrency"] == 16 and short["rpm"] is None
    assert (short["price_input_per_mtok"], short["price_output_per_mtok"]) == (2.0, 8.0)  # from sflib.core.costs
    assert resolve("judge", "openai:some-unknown-model")["price_input_per_mtok"] is None
    assert resolve("judge", "local:smollm2")["price_output_per_mtok"] == 0.0
    rec = resolve("judge", "recorded:a.csv,b.csv")
    assert rec["provider"] == "recorded" and rec["files"] == ["a.csv", "b.csv"]
    assert resolve("policy", "openai:Qwen/Qwen2.5-7B-Instruct")["temperature"] == 1.0


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown judge 'gtp-4o'.*gpt-4o-mini.*smollm2-llamacpp"):
        resolve("judge", "gtp-4o")
    with pytest.raises(ValueError, match="unknown policy 'nope'.*qwen2.5-7b-vllm"):
        resolve("policy", "nope")
    with pytest.raises(ValueError, match="unknown judge"):
        get_judge("gtp-4o")


@pytest.mark.parametrize("text,key,message", [
    ("provider: openai\nmodel: m\nrmp: 600\n", "rmp", "unknown key"),
    ("provider: openai\nmodel: m\nrpm: fast\n", "rpm", "expected a number"),
    ("provider: openai\nmodel: m\nconcurrency: 2.5\n", "concurrency", "expected an integer"),
    ("provider: openai\nmodel: m\ntemperature: true\n", "temperature", "expected a number"),
    ("provider: openai\nmodel: m\nconcurrency: 0\n", "concurrency", "must be >= 1"),
    ("provider: vllm\nmodel: m\n", "provider", "unknown provider"),
    ("provider: openai\n", "model", "missing"),
])
def test_bad_config_file_is_one_error_naming_file_and_key(tmp_path, text, key, message):
    path = tmp_path / "my_judge.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as e:
        resolve("judge", str(path))
    assert str(path) in str(e.value) and f"key '{key}'" in str(e.value) and e.value.key == key


def test_not_yaml_and_missing_file(tmp_path):
    path = tmp_path / "j.yaml"
    path.write_text("provider: [openai\n")
    with pytest.raises(ConfigError, match="not valid YAML") as e:
        resolve("judge", str(path))
    assert str(path) in str(e.value)
    with pytest.raises(FileNotFoundError, match="nothere.yaml"):
        resolve("judge", str(tmp_path / "nothere.yaml"))


def test_configs_in_the_current_folder_are_found_and_win(tmp_path, monkeypatch):
    (tmp_path / "judges").mkdir()
    (tmp_path / "judges" / "gpt-4o-mini.yaml").write_text("provider: openai\nmodel: gpt-4o-mini\nrpm: 42\n")
    (tmp_path / "judges" / "mine.yaml").write_text("provider: openai\nmodel: my-model\nprice_input_per_mtok: 1\n")
    monkeypatch.chdir(tmp_path)
    assert resolve("judge", "gpt-4o-mini")["rpm"] == 42
    assert resolve("judge", "mine")["model"] == "my-model" and "mine" in known_names("judge")


def test_get_judge_from_a_config_with_overrides(tmp_path, monkeypatch):
    path = tmp_path / "j.yaml"
    path.write_text("provider: openai\nmodel: my-model\nbase_url: http://127.0.0.1:1/v1\nbase_url_env: MY_URL\n"
                    "concurrency: 3\nrpm: 100\ntemperature: 0.5\nmax_tokens: 32\ntop_p: 0.8\ntemplate: v1\n"
                    "price_input_per_mtok: 1.0\nprice_output_per_mtok: 2.0\n")
    judge = get_judge(str(path), rpm=600, concurrency=7)
    assert isinstance(judge, OpenAIJudge)
    assert judge.rpm == 600 and judge.concurrency == 7  # the overrides win
    assert judge.params == {"temperature": 0.5, "max_tokens": 32, "top_p": 0.8}
    assert judge.base_url == "http://127.0.0.1:1/v1" and judge.template == "v1"
    monkeypatch.setenv("MY_URL", "http://127.0.0.1:2/v1")
    assert get_judge(str(path)).base_url == "http://127.0.0.1:2/v1"  # the variable wins when set
    from sflib.core import costs

    assert costs.cost(judge.name, 1_000_000, 1_000_000) == pytest.approx(3.0)  # the file's prices
    with pytest.raises(ConfigError, match="overrides, key 'rpm'"):
        get_judge(str(path), rpm="fast")


def test_shorthand_still_works_with_todays_parameters():
    judge = get_judge("openai:gpt-4o-mini", base_url="http://127.0.0.1:1/v1", api_key="sk-x")
    assert judge.name == "openai:gpt-4o-mini" and judge.params == {"temperature": 0.0, "max_tokens": 512}
    assert judge.concurrency == 16 and judge.rpm is None and judge.timeout == 60
    local = get_judge("local:smollm2", max_new_tokens=4, batch_size=2)
    assert local.name == "local:smollm2" and local.max_new_tokens == 4 and local.batch_size == 2
    assert get_judge("recorded").name.startswith("recorded:")
    with pytest.raises(ValueError, match="unknown provider 'foo'"):
        get_judge("foo:bar")


def _responses_table(path, n_instructions=20, per=2):
    rows = [{"instruction": f"Question {i}?", "input": "", "response": f"Answer {i}.{j}"}
            for i in range(n_instructions) for j in range(per)]
    sfio.write_table(pd.DataFrame(rows), path)
    return path


def test_cli_rpm_reaches_the_engine_no_429_storm(fake_openai_factory, tmp_path, capsys, monkeypatch):
    """600 requests/minute against a server that allows 660: with --rpm 600 not one 429; without it, a storm."""
    server = fake_openai_factory(rpm=660)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    src = _responses_table(tmp_path / "responses.jsonl")
    built = []
    original = OpenAIJudge.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(OpenAIJudge, "__init__", spy)
    code, out, err = _run_cli(capsys, "rate", "--judge", "openai:gpt-4o-mini", "--input", str(src), "--output",
                              str(tmp_path / "r.jsonl"), "--no-store", "--quiet", "--rpm", "600",
                              "--concurrency", "16", "--timeout", "30")
    assert code == 0, err
    assert built[-1].rpm == 600 and built[-1].concurrency == 16 and built[-1].timeout == 30
    assert server.outcomes["ok"] == 40 and server.outcomes["429"] == 0
    server.reset_counts()
    code, out, err = _run_cli(capsys, "rate", "--judge", "openai:gpt-4o-mini", "--input", str(src), "--output",
                              str(tmp_path / "r2.jsonl"), "--no-store", "--quiet", "--concurrency", "16",
                              "--temperature", "0.3", "--max-tokens", "20")
    assert code == 0, err
    assert built[-1].rpm is None and built[-1].params == {"temperature": 0.3, "max_tokens": 20}
    assert server.outcomes["429"] > 0  # the same run without the budget provokes 429s


def test_cli_rate_exits_non_zero_on_http_401_with_the_reason(fake_openai_factory, tmp_path, capsys, monkeypatch):
    server = fake_openai_factory(schedule=lambda n, prompt: "401")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    src = _responses_table(tmp_path / "responses.jsonl", n_instructions=3)
    (tmp_path / "r.jsonl").write_text("previous output\n")
    code, out, err = _run_cli(capsys, "rate", "--judge", "openai:gpt-4o-mini", "--input", str(src), "--output",
                              str(tmp_path / "r.jsonl"), "--no-store", "--quiet")
    assert code == 3
    assert "incomplete: 6 rows, 6 failed" in err and "401" in err and "sk-test-not-a-secret" not in err + out
    assert (tmp_path / "r.jsonl").read_text() == "previous output\n"  # an earlier output is left alone
    partial = sfio.read_table(tmp_path / "r.partial.jsonl")
    assert (partial["status"] == "failed").all() and len(partial) == 6
    code, out, err = _run_cli(capsys, "rate", "--judge", "openai:gpt-4o-mini", "--input", str(src), "--output",
                              str(tmp_path / "r.jsonl"), "--no-store", "--quiet", "--allow-partial")
    assert code == 0 and "6 failed" in err and len(sfio.read_table(tmp_path / "r.jsonl")) == 6
    assert server.requests >= 12


def test_cli_rate_with_a_judge_file_and_limit(fake_openai, tmp_path, capsys):
    path = tmp_path / "fake.yaml"
    path.write_text(f"provider: openai\nmodel: fake-judge\nbase_url: {fake_openai.url}\napi_key_env: null\n"
                    "concurrency: 4\nprice_input_per_mtok: 0\nprice_output_per_mtok: 0\n")
    src = _responses_table(tmp_path / "responses.jsonl", n_instructions=5)
    code, out, err = _run_cli(capsys, "rate", "--judge", str(path), "--input", str(src), "--output",
                              str(tmp_path / "r.jsonl"), "--no-store", "--quiet", "--limit", "2")
    assert code == 0, err
    table = sfio.read_table(tmp_path / "r.jsonl")
    assert table["instruction"].tolist() == ["Question 0?"] * 2 + ["Question 1?"] * 2
    assert (table["judge"] == "openai:fake-judge").all() and fake_openai.requests == 4
    assert "$0.0000" in out
    code, out, err = _run_cli(capsys, "rate", "--judge", str(path), "--input", str(src), "--output",
                              str(tmp_path / "r.jsonl"), "--no-store", "--limit", "0")
    assert code == 1 and "--limit" in err
