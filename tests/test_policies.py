"""Policies as their own kind of thing (sflib.generation.policies) and `generate --policy NAME`."""
import json

import pandas as pd
import pytest

from sflib.core import data as d
from sflib import io as sfio
from sflib.generation import sampling_local
from sflib.generation.policies import Policy, get_policy

INSTRUCTIONS = pd.DataFrame({"instruction": ["Say hello.", "Name a colour."], "input": ["", ""]})


def test_shipped_policies_and_overrides():
    local = get_policy("smollm2")
    assert isinstance(local, Policy) and local.provider == "local" and local.model == "smollm2"
    assert local.prompt_style == "chat" and local.config["temperature"] == 1.0
    qwen = get_policy("qwen2.5-7b-vllm", temperature=0.7, concurrency=3)
    assert qwen.provider == "openai" and qwen.config["temperature"] == 0.7 and qwen.config["concurrency"] == 3
    client = qwen.client()
    assert client.concurrency == 3 and client.params["temperature"] == 0.7 and client.params["top_p"] == 0.9
    assert client.base_url == "http://localhost:8000/v1"
    with pytest.raises(ValueError, match="unknown policy 'gpt-4o-mini'"):
        get_policy("gpt-4o-mini")  # a judge name is not a policy
    with pytest.raises(ValueError, match="unknown policy 'recorded:x.csv'; known policies: qwen2.5-7b-vllm"):
        get_policy("recorded:x.csv")


def test_a_recorded_policy_file_is_refused(tmp_path):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("provider: recorded\n")
    with pytest.raises(ValueError, match="key 'provider': a policy cannot be 'recorded'"):
        get_policy(str(cfg))


def test_local_policy_passes_its_settings_to_the_sampler(monkeypatch, tmp_path):
    seen = {}

    def fake_generate_local(instructions, **kwargs):
        seen.update(kwargs)
        return pd.DataFrame({"instruction_id": ["x"]})

    monkeypatch.setattr(sampling_local, "generate_local", fake_generate_local)
    cfg = tmp_path / "p.yaml"
    cfg.write_text("provider: local\nmodel: some/folder\ntemperature: 0.7\ntop_p: 0.8\nmax_tokens: 33\n"
                   "batch_size: 4\ntemplate: alpaca\ndevice: cpu\n")
    get_policy(str(cfg), max_new_tokens=44).generate(INSTRUCTIONS, k=3, seed=5, store=False)
    assert seen == {"model": "some/folder", "k": 3, "temperature": 0.7, "top_p": 0.8, "max_new_tokens": 44,
                    "batch_size": 4, "seed": 5, "prompt_style": "alpaca", "generator": None, "store": False,
                    "device": "cpu", "progress": True}


def test_policy_template_must_be_a_prompt_style(tmp_path):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("provider: local\nmodel: smollm2\ntemplate: v1\n")
    with pytest.raises(ValueError, match="template must be 'chat' or 'alpaca'"):
        get_policy(str(cfg))


def test_server_policy_generates_through_the_engine(fake_openai, tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_BASE_URL", fake_openai.url)  # the shipped config's variable wins over its base_url
    out = get_policy("qwen2.5-7b-vllm").generate(INSTRUCTIONS, k=2, seed=1, store=tmp_path / "s.sqlite",
                                                 progress=False)
    assert len(out) == 4 and fake_openai.requests == 2  # n=2 in one request per instruction (the default)
    assert (out["generator"] == "openai:Qwen/Qwen2.5-7B-Instruct").all()
    assert out["response"].nunique() == 4  # each choice is its own sample
    params = json.loads(out["params"].iloc[0])
    assert params["temperature"] == 1.0 and params["top_p"] == 0.9 and params["max_tokens"] == 512


def test_policy_file_can_ask_one_request_per_sample(fake_openai, tmp_path):
    cfg = tmp_path / "one_each.yaml"
    cfg.write_text(f"provider: openai\nmodel: m\nbase_url: {fake_openai.url}\napi_key_env: null\nn_per_request: false\n")
    out = get_policy(str(cfg)).generate(INSTRUCTIONS, k=2, store=False, progress=False)
    assert len(out) == 4 and fake_openai.requests == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("provider: openai\nmodel: m\nn_per_request: sometimes\n")
    with pytest.raises(ValueError, match="n_per_request"):
        get_policy(str(bad))


def test_cli_generate_with_a_policy_config_name_and_overrides(fake_openai, tmp_path, monkeypatch):
    from sflib.cli import main

    monkeypatch.setenv("VLLM_BASE_URL", fake_openai.url)
    src = tmp_path / "instructions.json"
    src.write_text(json.dumps([{"instruction": "Say hello.", "input": ""}, {"instruction": "Name a colour."}]))
    code = main(["generate", "--instructions", str(src), "--policy", "qwen2.5-7b-vllm", "--k", "3", "--output",
                 str(tmp_path / "r.jsonl"), "--store", str(tmp_path / "a.sqlite"), "--temperature", "0.5",
                 "--max-tokens", "64", "--concurrency", "2", "--rpm", "6000"])
    assert code == 0 and fake_openai.requests == 2 and fake_openai.max_in_flight <= 2  # n=3 per request
    table = sfio.read_table(tmp_path / "r.jsonl", required=d.RESPONSE_COLUMNS)
    params = json.loads(table["params"].iloc[0])
    assert params["temperature"] == 0.5 and params["max_tokens"] == 64
    code = main(["generate", "--instructions", str(src), "--policy", "no-such-policy", "--output",
                 str(tmp_path / "x.jsonl")])
    assert code == 1 and not (tmp_path / "x.jsonl").exists()
    code = main(["generate", "--instructions", str(src), "--policy", "smollm2", "--model", "smollm2", "--output",
                 str(tmp_path / "x.jsonl")])
    assert code == 1
