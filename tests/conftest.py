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
