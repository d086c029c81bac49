"""Policy sampling: a tiny random Llama with the SmolLM2 tokenizer (local), and the fake OpenAI server."""
import json

import pandas as pd
import pytest

from sflib.core import data as d
from sflib import io as sfio
from sflib.generation import generate as g
from sflib.generation import sampling_local, sampling_openai
from sflib.cli import build_parser
from sflib.core.prompts import alpaca_prompt

INSTRUCTIONS = pd.DataFrame({
    "instruction": ["Say hello.", "Write a long poem about cats and dogs.", "Add the numbers.", "Name a colour."],
    "input": ["", "", "1 2", None],
    "source": ["a", "b", "c", "d"],
})


@pytest.fixture(scope="module")
def policy():
    """(model, tokenizer): a 2-layer random Llama over the SmolLM2 vocabulary."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from sflib.generation.models import smollm2_path

    tok = AutoTokenizer.from_pretrained(smollm2_path())
    tok.padding_side = "left"
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, bos_token_id=1, eos_token_id=2, pad_token_id=2,
                      initializer_range=1.0)  # large weights: peaked next-token distributions, like a trained LM
    torch.manual_seed(0)
    lm = LlamaForCausalLM(cfg).eval()
    lm.generation_config.eos_token_id = 2
    return lm, tok


class Spy:
    """Wraps a model and counts the sequences it was asked to generate."""

    def __init__(self, lm, fake_eos: bool = False):
        self.lm, self.generation_config, self.rows, self.fake_eos = lm, lm.generation_config, 0, fake_eos

    def generate(self, **kwargs):
        import torch

        ids = kwargs["input_ids"]
        self.rows += ids.shape[0]
        if self.fake_eos:  # a model that stops at once: every response is empty
            return torch.cat([ids, torch.full((ids.shape[0], 1), 2)], dim=1)
        return self.lm.generate(**kwargs)


def run(policy, instructions=INSTRUCTIONS, **kw):
    kw = {"k": 3, "max_new_tokens": 8, "batch_size": 5, "store": False, "policy": policy, "progress": False, **kw}
    return sampling_local.generate_local(instructions, **kw)


def test_k_per_instruction_layout_and_params(policy):
    out = run(policy)
    assert list(out.columns[:7]) == d.RESPONSE_COLUMNS
    assert out.groupby("instruction_id")["sample"].apply(list).tolist() == [[0, 1, 2]] * 4
    assert out["instruction"].drop_duplicates().tolist() == INSTRUCTIONS["instruction"].tolist()  # input order
    assert out["source"].drop_duplicates().tolist() == ["a", "b", "c", "d"]
    assert out["input"].tolist()[6:9] == ["1 2"] * 3 and out["input"].tolist()[9] == ""
    params = json.loads(out["params"].iloc[0])
    assert params["seed"] == 0 and params["temperature"] == 1.0 and params["top_p"] == 0.9
    assert params["max_new_tokens"] == 8 and params["prompt_style"] == "chat"
    assert (out["n_tokens"] <= 8).all() and set(out["finish_reason"]) <= {"stop", "length"}
    assert out["response_id"].tolist() == [d.make_response_id(i, r) for i, r in zip(out["instruction_id"], out["response"])]


def test_reproducible_per_instruction_and_independent_of_batch_and_subset(policy):
    full = run(policy)
    assert run(policy)["response"].tolist() == full["response"].tolist()
    # a subset, in another order, another batch size and a larger k: the shared samples are identical
    sub = run(policy, instructions=INSTRUCTIONS.iloc[[2, 0]], k=4, batch_size=3)
    merged = full.merge(sub, on=["instruction_id", "sample"], suffixes=("_full", "_sub"))
    assert len(merged) == 6
    assert (merged["response_full"] == merged["response_sub"]).all()
    # different instructions and different samples get different draws; another seed changes them
    by_sample0 = full[full["sample"] == 0]["response"]
    assert by_sample0.nunique() == 4
    assert full.groupby("instruction_id")["response"].nunique().min() > 1
    other = run(policy, seed=1)
    assert (other["response"] != full["response"]).mean() > 0.8


def test_sampler_draws_from_the_temperature_scaled_nucleus():
    import torch

    sampler = sampling_local._sampler_class()([123], temperature=0.5, top_p=0.8)
    logits = torch.tensor([[1.0, 0.5, 0.25, 0.0, -0.5]])
    draws = torch.tensor([int(sampler(None, logits).argmax()) for _ in range(4000)])
    probs = (logits[0] / 0.5).softmax(-1)  # 0.53, 0.20, 0.12, 0.07, ...: nucleus = first 3 tokens
    nucleus = probs[:3] / probs[:3].sum()
    freq = torch.bincount(draws, minlength=5).float() / len(draws)
    assert freq[3:].sum() == 0 and torch.allclose(freq[:3], nucleus, atol=0.03)
    # a flat distribution over a large vocabulary takes the full-sort path: the tail is never drawn
    sampler = sampling_local._sampler_class()([7, 8], temperature=1.0, top_p=0.5)
    flat = torch.linspace(0, 1e-3, 2000).repeat(2, 1)
    picks = [sampler(None, flat).argmax(-1) for _ in range(300)]
    assert min(int(p.min()) for p in picks) >= 900  # ~ the top half of the mass only
    assert picks[0][0] != picks[0][1] or picks[1][0] != picks[1][1]  # rows have their own generators
    greedy = sampling_local._sampler_class()([1], temperature=0.0, top_p=0.9)
    assert int(greedy(None, logits).argmax()) == 0


def test_seeds_are_stable_hashes():
    assert g.instruction_seed(0, "abc") == g.instruction_seed(0, "abc") != g.instruction_seed(1, "abc")
    assert g.sample_seed(0, "abc", 0) != g.sample_seed(0, "abc", 1) != g.sample_seed(0, "abd", 1)


def test_killed_run_resumes_from_the_store(policy, tmp_path):
    store = tmp_path / "gen.jsonl"
    full = run(policy, store=False)
    spy = Spy(policy[0])
    first = run((spy, policy[1]), store=store, batch_size=5)
    assert spy.rows == 12 and first["response"].tolist() == full["response"].tolist()
    # simulate a kill: keep the first 5 samples and a half-written line
    lines = store.read_text().splitlines()
    store.write_text("\n".join(lines[:5]) + "\n" + lines[5][:10])
    spy.rows = 0
    with pytest.warns(UserWarning, match="half-written last line"):
        resumed = run((spy, policy[1]), store=store)
    assert spy.rows == 7  # only the missing samples were generated
    assert resumed["response"].tolist() == full["response"].tolist()
    spy.rows = 0
    again = run((spy, policy[1]), store=store, instructions=INSTRUCTIONS.iloc[:2])
    assert spy.rows == 0 and len(again) == 6  # a subset is served from the store


def test_default_store_is_named_by_parameters(policy, tmp_path, monkeypatch):
    monkeypatch.setenv("SFLIB_OUTPUTS", str(tmp_path))
    run(policy, store=None, k=1, instructions=INSTRUCTIONS.iloc[:1])
    run(policy, store=None, k=1, instructions=INSTRUCTIONS.iloc[:1], temperature=0.5)
    files = sorted((tmp_path / "generations").glob("*.jsonl"))
    assert len(files) == 2 and all(f.name.startswith("smollm2-135m-instruct-") for f in files)


def test_empty_outputs_are_kept_and_counted(policy):
    spy = Spy(policy[0], fake_eos=True)
    with pytest.warns(UserWarning, match=r"12 of 12 responses are empty \(in 4 of 4 instructions\)"):
        out = run((spy, policy[1]))
    assert len(out) == 12 and (out["response"] == "").all() and (out["n_tokens"] == 0).all()
    assert (out["finish_reason"] == "stop").all()


def test_prompts_chat_and_alpaca(policy):
    tok = policy[1]
    assert g.build_prompt(tok, "Add.", "1 2", "alpaca") == alpaca_prompt("Add.", "1 2")
    chat = g.build_prompt(tok, "Add.", "1 2", "chat")
    assert "Add.\n\n1 2" in chat and chat.rstrip().endswith("assistant")
    with pytest.raises(ValueError, match="prompt_style"):
        run(policy, prompt_style="plain")
    out = run(policy, prompt_style="alpaca", k=1)
    assert json.loads(out["params"].iloc[0])["prompt_format"] == "alpaca-v1"


def test_repeated_instructions_warn_with_count(policy):
    twice = pd.concat([INSTRUCTIONS.iloc[:2], INSTRUCTIONS.iloc[:1]])
    with pytest.warns(UserWarning, match="1 repeated instruction"):
        out = run(policy, instructions=twice, k=1)
    assert len(out) == 2


def test_both_layouts_round_trip(policy, tmp_path):
    out = run(policy)
    g.write_responses(out, tmp_path / "r.jsonl", tmp_path / "r.json")
    table = sfio.read_table(tmp_path / "r.jsonl", required=d.RESPONSE_COLUMNS)
    assert table["response"].tolist() == out["response"].tolist()
    raw = json.loads((tmp_path / "r.json").read_text())
    assert len(raw) == 4 and all(len(r["responses"]) == 3 for r in raw) and set(raw[0]) == {"instruction", "input", "responses"}
    back = sfio.read_responses(tmp_path / "r.json")
    assert back["response"].tolist() == out["response"].tolist()
    assert back["instruction_id"].tolist() == out["instruction_id"].tolist()


def test_openai_compatible_policy_uses_the_engine_and_store(fake_openai, tmp_path):
    from sflib.judges.openai_judge import OpenAIJudge
    from sflib.feedback.store import AnnotationStore

    policy = OpenAIJudge("my-policy", base_url=fake_openai.url, api_key="sk-test", concurrency=4,
                         temperature=0.7, max_tokens=32, top_p=0.9)
    store = AnnotationStore(tmp_path / "a.sqlite")
    out = sampling_openai.generate_openai(INSTRUCTIONS, policy, k=3, store=store, progress=False)
    assert fake_openai.requests == 4  # one request with n=3 per instruction; each choice its own sample
    assert out.groupby("instruction_id")["sample"].apply(list).tolist() == [[0, 1, 2]] * 4
    assert out["response"].str.startswith("echo: ").all()
    assert any(p.startswith("Add the numbers.\n\n1 2") for p in fake_openai.prompts)  # chat: instruction + input
    assert out["generator"].iloc[0] == "openai:my-policy"
    params = json.loads(out["params"].iloc[0])
    assert params["temperature"] == 0.7 and params["top_p"] == 0.9 and params["model"] == "my-policy"
    again = sampling_openai.generate_openai(INSTRUCTIONS, policy, k=4, store=store, progress=False)
    assert fake_openai.requests == 8  # resumed: only the new fourth samples were asked (one each)
    one_each = sampling_openai.generate_openai(INSTRUCTIONS, policy, k=3, store=False, progress=False, n_per_request=False)
    assert fake_openai.requests == 20  # n_per_request=False: one request per sample
    assert len(one_each) == 12
    assert again[again["sample"] < 3]["response"].tolist() == out["response"].tolist()


def test_openai_failures_are_errors_not_empty_responses(fake_openai_factory, tmp_path):
    from sflib.judges.openai_judge import OpenAIJudge

    server = fake_openai_factory(schedule=lambda n, prompt: "500" if "poem" in prompt else "ok")
    policy = OpenAIJudge("p", base_url=server.url, api_key="sk-test", max_retries=0, temperature=1.0)
    with pytest.raises(RuntimeError, match="2 of 8 sampling requests .* failed") as e:
        sampling_openai.generate_openai(INSTRUCTIONS, policy, k=2, store=tmp_path / "s.sqlite", progress=False)
    partial = e.value.result  # sflib.io.outputs.Incomplete: the samples that were drawn, none made up
    assert len(partial) == 6 and e.value.failed == 2 and not partial["instruction"].str.contains("poem").any()


def test_cli_help(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["generate", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "--openai-model" in text and "--prompt-style" in text and "--max-new-tokens" in text


def test_cli_generate_against_a_server_writes_both_layouts(fake_openai, tmp_path):
    from sflib.cli import main

    src = tmp_path / "instructions.json"
    d.write_instructions_json(g.prepare_instructions(INSTRUCTIONS).rename(columns={"instruction_id": "id"}), src)
    code = main(["generate", "--instructions", str(src), "--policy", "openai:my-policy", "--base-url", fake_openai.url,
                 "--k", "2", "--output", str(tmp_path / "r.jsonl"), "--generations-json", str(tmp_path / "r.json"),
                 "--store", str(tmp_path / "a.sqlite"), "--temperature", "0.8"])
    assert code == 0 and fake_openai.requests == 4  # one request with n=2 per instruction
    table = sfio.read_table(tmp_path / "r.jsonl", required=d.RESPONSE_COLUMNS)
    assert len(table) == 8 and (table["generator"] == "openai:my-policy").all()
    assert json.loads(table["params"].iloc[0])["temperature"] == 0.8
    assert [len(r["responses"]) for r in json.loads((tmp_path / "r.json").read_text())] == [2, 2, 2, 2]


def test_the_seed_is_part_of_the_sampling_cache_key(fake_openai, tmp_path):
    """An unchanged run reuses every stored sample; a new seed (or a new sampling parameter) samples anew."""
    from sflib.feedback.store import AnnotationStore
    from sflib.generation.sampling_openai import sampling_requests
    from sflib.judges.openai_judge import OpenAIJudge

    # seed 0 keeps the key stores written before the seed was part of it used, so they are reused
    _, requests = sampling_requests(INSTRUCTIONS, 2, seed=0)
    assert [r.meta["cache_salt"] for r in requests[:2]] == ["sample=0", "sample=1"]
    _, requests = sampling_requests(INSTRUCTIONS, 2, seed=3)
    assert [r.meta["cache_salt"] for r in requests[:2]] == ["sample=0;seed=3", "sample=1;seed=3"]

    store = AnnotationStore(tmp_path / "a.sqlite")
    policy = OpenAIJudge("p", base_url=fake_openai.url, api_key="sk-test", temperature=1.0)
    sampling_openai.generate_openai(INSTRUCTIONS, policy, k=2, store=store, seed=0, progress=False)
    asked = fake_openai.requests
    assert asked == 4
    sampling_openai.generate_openai(INSTRUCTIONS, policy, k=2, store=store, seed=0, progress=False)
    assert fake_openai.requests == asked                                 # unchanged: every sample from the store
    sampling_openai.generate_openai(INSTRUCTIONS, policy, k=2, store=store, seed=1, progress=False)
    assert fake_openai.requests == asked + 4                             # a new seed samples anew
    hotter = OpenAIJudge("p", base_url=fake_openai.url, api_key="sk-test", temperature=0.5)
    sampling_openai.generate_openai(INSTRUCTIONS, hotter, k=2, store=store, seed=1, progress=False)
    assert fake_openai.requests == asked + 8                             # so does a new temperature
    from sflib.generation.sampling_local import store_path_for  # local: the sample file is named by all of them

    assert store_path_for("g", {"seed": 0, "temperature": 1.0}) != store_path_for("g", {"seed": 1, "temperature": 1.0})
