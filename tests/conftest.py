"""Shared fixtures: a fake OpenAI-compatible server (see tests/fake_openai.py for its options)."""
import pytest

from fake_openai import FakeOpenAI


@pytest.fixture
def fake_openai_factory():
    """``make(**options) -> FakeOpenAI`` (started); every server is stopped after the test."""
    servers = []

    def make(**options) -> FakeOpenAI:
        server = FakeOpenAI(**options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def fake_openai(fake_openai_factory) -> FakeOpenAI:
    """A fault-free fake server with no latency; ``fake_openai.url`` is its base_url."""
    return fake_openai_factory()


@pytest.fixture(scope="session")
def tiny_rm_folder(tmp_path_factory):
    """A saved ratings reward model: a 1-layer random BERT over the bundled MiniLM tokenizer, with its metadata."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from sflib.generation.models import minilm_path
    from sflib.core.prompts import PROMPT_FORMAT
    from sflib.rm import RewardModel

    tok = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32, num_labels=1))
    meta = {"format": "sflib-reward-model", "version": 1, "kind": "ratings", "prompt_format": PROMPT_FORMAT,
            "backbone": "tiny", "lora": False, "max_length": 64}
    folder = tmp_path_factory.mktemp("rm") / "ratings"
    RewardModel(model.eval(), tok, meta).save(folder)
    return folder
