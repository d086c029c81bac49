"""A key-echoing fake server answering 401/400/404 to chat, files and batches: the API key appears in
no stdout, stderr, store, log or output file, and the error names the cause in one line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sflib.judges.base import provider_error, scrub

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-proj-LEAKCHECK-0123456789abcdefXYZ"

CASES = [  # (route refused, status, command, what the one line must say)
    ("chat", 401, "rate", "bad API key (401)"),
    ("chat", 400, "rate", "bad request (400)"),
    ("chat", 404, "rate", "not found (404)"),
    ("files", 401, "rate-batch", "files.create (uploading the requests) failed: bad API key (401)"),
    ("files", 400, "rate-batch", "files.create (uploading the requests) failed: bad request (400)"),
    ("batches", 401, "rate-batch", "batches.create failed: bad API key (401)"),
    ("batches", 400, "rate-batch", "batches.create failed: bad request (400)"),
    ("chat", 401, "generate", "bad API key (401)"),
]


def _files_with_key(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]


@pytest.mark.parametrize("route,status,command,cause", CASES)
def test_key_never_appears_anywhere(fake_openai_factory, tmp_path, route, status, command, cause):
    server = fake_openai_factory(refuse={route: status}, batch_delay=0.0)
    items = tmp_path / "items.json"
    items.write_text(json.dumps([{"instruction": f"Explain {i}.", "input": "", "response": f"A{i}"}
                                 for i in range(3)]))
    if command == "generate":
        args = ["generate", "--instructions", str(items), "--out", str(tmp_path / "out.jsonl"),
                "-k", "2", "--openai-model", "policy", "--base-url", server.url,
                "--store", str(tmp_path / "store.sqlite")]
    else:
        args = ["rate", "--judge", "openai:gpt-4o-mini", "--input", str(items), "--output",
                str(tmp_path / "out.jsonl"), "--store", str(tmp_path / "store.sqlite"), "--quiet"]
        if command == "rate-batch":
            args += ["--mode", "batch"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": KEY,
           "OPENAI_BASE_URL": server.url, "SFLIB_OUTPUTS": str(tmp_path / "outputs")}
    done = subprocess.run([sys.executable, "-m", "sflib", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    # the server did echo the key (the check is not vacuous)
    assert any(KEY in a for a in server.auth_headers)
    assert KEY not in done.stdout and KEY not in done.stderr
    assert _files_with_key(tmp_path) == []
    assert done.returncode != 0
    assert cause in done.stdout + done.stderr, done.stderr[-2000:]
    if command != "generate":  # generate's exit contract (one line, exit 3) is issue 21's part B
        assert "Traceback" not in done.stderr


def test_scrub_and_provider_error():
    class Refused(Exception):
        status_code, code = 401, None
        message = f"Incorrect API key provided: Bearer {KEY}"

    line = provider_error(Refused(), KEY)
    assert KEY not in line and line.startswith("bad API key (401)")
    assert scrub(f"key={KEY} and Bearer abc.def and sk-another-key-123", KEY) == \
        "key=*** and Bearer *** and sk-***"
