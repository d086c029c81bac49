"""The exit-code contract of every stage command (sflib.io.outputs, applied by sflib.cli.main):
0 complete; 3 incomplete with a ``.partial`` output and one line on what is left (``--allow-partial``: 0);
1 bad input in one line naming the file (row, field); 130 on Ctrl-C with one line and no traceback.
A failed run never overwrites a complete output, and a complete run removes a stale ``.partial``."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sflib.cli import main
from sflib import io as sfio

REPO = Path(__file__).resolve().parents[1]
INSTRUCTIONS = ["Write a poem about the sea.", "Say hi.", "Write a poem about rain.", "Name a colour."]


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def fails_on_poems(fake_openai_factory, **options):
    """A server that refuses (401: not retried, so the test is quick) every request about a poem while ``down``."""
    state = {"down": True}
    server = fake_openai_factory(schedule=lambda n, prompt: "401" if state["down"] and "poem" in prompt else "ok",
                                 **options)
    return server, state


def outputs_file(path: Path, name: str, prefix: str) -> Path:
    rows = [{"instruction": t, "input": "", "output": f"{prefix} answer to {t}", "generator": name,
             "dataset": "helpful_base"} for t in INSTRUCTIONS]
    path.write_text(json.dumps(rows))
    return path


def responses_file(path: Path) -> Path:
    rows = [{"instruction": t, "input": "", "responses": [f"first answer to {t}", f"second answer to {t}"]}
            for t in INSTRUCTIONS]
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
    monkeypatch.setenv("SFLIB_OUTPUTS", str(tmp_path / "outputs"))
    return tmp_path


# ----------------------------------------------------------------------------- 1: bad input, one line

def _bad_input_commands(tmp: Path) -> dict[str, list]:
    bad = tmp / "bad.json"
    bad.write_text('"hello"')
    study = tmp / "bad_study.yaml"
    study.write_text("name: bad\npolicy: [not, a, section]\n")
    return {
        "generate": ["generate", "--instructions", bad, "--policy", "openai:pol", "--output", tmp / "g.jsonl"],
        "rate": ["rate", "--judge", "recorded", "--input", bad, "--output", tmp / "r.jsonl"],
        "rank": ["rank", "--judge", "recorded", "--input", bad, "--output", tmp / "k.jsonl"],
        "consistency": ["consistency", "--ratings", bad, "--rankings", bad],
        "winrate": ["winrate", "--policy", bad, "--reference", bad, "--rankings", bad],
        "train-rm": ["train-rm", "--kind", "ratings", "--data", bad, "--output", tmp / "rm"],
        "score": ["score", "--rm", tmp / "rm", "--data", bad, "--output", tmp / "s.jsonl"],
        "best-of-n": ["best-of-n", "--responses", bad, "--rm", tmp / "rm", "--out-dir", tmp / "bon"],
        "convert": ["convert", bad, tmp / "c.jsonl", "--from", "responses"],
        "convert-original": ["convert-original", "--original", tmp / "no_such_folder", "--out", tmp / "canon"],
        "study run": ["study", "run", study, "--only", "01", "--no-progress"],
    }


@pytest.mark.parametrize("command", ["generate", "rate", "rank", "consistency", "winrate", "train-rm", "score",
                                     "best-of-n", "convert", "convert-original", "study run"])
def test_bad_input_is_exit_1_with_one_line_naming_the_file(env, capsys, command):
    args = _bad_input_commands(env)[command]
    code, out, err = run(capsys, *args)
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    named = {"convert-original": "no_such_folder", "study run": "bad_study"}.get(command, "bad.json")
    assert named in lines[0]
    assert "Traceback" not in err + out
    assert not list(env.glob("*.partial*"))


def test_bad_input_names_the_row_and_the_field(env, capsys):
    src = env / "typed.json"
    src.write_text(json.dumps([{"instruction": "ok", "input": "", "output": "x"},
                               {"instruction": ["a", "list"], "input": "", "output": "y"}]))
    code, _, err = run(capsys, "rate", "--judge", "recorded", "--input", src, "--output", env / "r.jsonl")
    assert code == 1 and err.strip().splitlines() == [f"error: {src}, row 2, field 'instruction': expected text, "
                                                      f"found list ['a', 'list']"]


@pytest.mark.parametrize("layouts", [("responses", "rankings"), ("instructions", "rankings"),
                                     ("instructions", "ratings"), ("responses", "pairs_csv")])
def test_a_conversion_that_cannot_be_made_says_so_in_one_line(env, capsys, layouts):
    src, dst = layouts
    path = outputs_file(env / "in.json", "pol", "policy")
    code, out, err = run(capsys, "convert", path, env / "out.csv", "--from", src, "--to", dst)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert f"cannot convert {src} to {dst}" in err and "Traceback" not in err
    assert not (env / "out.csv").exists()


def test_responses_convert_to_model_outputs(env, capsys):
    path = responses_file(env / "gen.json")
    code, out, err = run(capsys, "convert", path, env / "mo.json", "--from", "responses", "--to", "model_outputs")
    assert code == 0, err
    rows = json.loads((env / "mo.json").read_text())
    assert len(rows) == 8 and rows[0]["output"] == f"first answer to {INSTRUCTIONS[0]}"


def test_a_json_scalar_file_is_named_as_such(env, capsys):
    (env / "s.json").write_text('"hello"\n')
    code, _, err = run(capsys, "rate", "--judge", "recorded", "--input", env / "s.json", "--output", env / "r.jsonl")
    assert code == 1 and "holds a single JSON value (a string 'hello'), not records" in err
    assert "first row is not a header" not in err


# ----------------------------------------------------------------------------- 3: some / all failed

@pytest.mark.parametrize("command", ["rate", "rank"])
def test_feedback_some_failed_then_complete(env, capsys, fake_openai_factory, command):
    server, state = fails_on_poems(fake_openai_factory)
    os.environ["OPENAI_BASE_URL"] = server.url
    src, output = responses_file(env / "gen.json"), env / "out.jsonl"
    output.write_text("previous complete output\n")
    args = [command, "--judge", "openai:gpt-4o-mini", "--input", src, "--output", output,
            "--store", env / "store.sqlite", "--quiet"]
    try:
        code, out, err = run(capsys, *args)
        assert code == 3 and "incomplete:" in err and "--allow-partial" in err
        assert output.read_text() == "previous complete output\n"       # never overwritten by a failed run
        partial = sfio.read_table(env / "out.partial.jsonl")
        assert (partial["status"] == "failed").sum() == (4 if command == "rate" else 2)
        state["down"] = False
        code, out, err = run(capsys, *args)
        assert code == 0, err
        assert not (env / "out.partial.jsonl").exists()                 # the stale partial is removed
        assert sfio.read_table(output)["valid"].all()
    finally:
        os.environ.pop("OPENAI_BASE_URL", None)


def test_rate_all_failed_is_3_and_allow_partial_accepts_it(env, capsys, fake_openai_factory, monkeypatch):
    server = fake_openai_factory(schedule=lambda n, prompt: "401")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    src = responses_file(env / "gen.json")
    args = ["rate", "--judge", "openai:gpt-4o-mini", "--input", src, "--output", env / "out.jsonl", "--no-store",
            "--quiet"]
    code, _, err = run(capsys, *args)
    assert code == 3 and "incomplete: 8 rows, 8 failed" in err and not (env / "out.jsonl").exists()
    code, _, err = run(capsys, *args, "--allow-partial")
    assert code == 0 and len(sfio.read_table(env / "out.jsonl")) == 8


def test_generate_some_failed_gives_3_and_a_partial_then_finishes(env, capsys, fake_openai_factory):
    server, state = fails_on_poems(fake_openai_factory)
    src = env / "instructions.json"
    src.write_text(json.dumps([{"instruction": t, "input": ""} for t in INSTRUCTIONS]))
    out, gens = env / "r.jsonl", env / "r.json"
    args = ["generate", "--instructions", src, "--policy", "openai:pol", "--base-url", server.url, "--k", "2",
            "--output", out, "--generations-json", gens, "--store", env / "a.sqlite"]
    code, stdout, err = run(capsys, *args)
    assert code == 3 and "Traceback" not in err
    assert "incomplete: 4 of 8 sampling requests" in err and "401" in err
    assert not out.exists() and not gens.exists()
    partial = sfio.read_table(env / "r.partial.jsonl")
    assert len(partial) == 4 and not partial["instruction"].str.contains("poem").any()
    assert (env / "r.partial.json").exists()
    state["down"] = False
    server.reset_counts()
    code, stdout, err = run(capsys, *args)
    assert code == 0, err
    assert all("poem" in p for p in server.prompts)                    # only what failed is asked again
    assert len(sfio.read_table(out)) == 8 and gens.exists()
    assert not (env / "r.partial.jsonl").exists() and not (env / "r.partial.json").exists()


def test_generate_all_failed_is_3_not_a_traceback(env, capsys, fake_openai_factory):
    server = fake_openai_factory(schedule=lambda n, prompt: "401")
    src = env / "instructions.json"
    src.write_text(json.dumps([{"instruction": t, "input": ""} for t in INSTRUCTIONS]))
    code, _, err = run(capsys, "generate", "--instructions", src, "--policy", "openai:pol", "--base-url", server.url,
                       "--k", "2", "--output", env / "r.jsonl", "--store", env / "a.sqlite")
    assert code == 3 and "incomplete: 8 of 8 sampling requests" in err and "Traceback" not in err
    assert not (env / "r.jsonl").exists()
    code, _, err = run(capsys, "generate", "--instructions", src, "--policy", "openai:pol", "--base-url", server.url,
                       "--k", "2", "--output", env / "r.jsonl", "--store", env / "a.sqlite", "--allow-partial")
    assert code == 0 and "incomplete: 8 of 8" in err and (env / "r.jsonl").exists()  # accepted on purpose


def test_winrate_with_no_counted_judgment_is_not_exit_0(env, capsys):
    policy = outputs_file(env / "policy.json", "pol", "policy")
    reference = outputs_file(env / "reference.json", "ref", "reference")
    wrong = env / "rankings.json"  # judgments of other texts: none counts
    wrong.write_text(json.dumps([{"instruction": t, "input": "", "response1": "other", "response2": "texts",
                                  "decision": "b"} for t in INSTRUCTIONS]))
    report = env / "wr.json"
    report.write_text('{"previous": "complete report"}')
    args = ["winrate", "--policy", policy, "--reference", reference, "--rankings", wrong, "--n-boot", "10",
            "--json", report]
    code, out, err = run(capsys, *args)
    assert code == 3 and "n = 0" in err
    assert json.loads(report.read_text()) == {"previous": "complete report"}
    assert (env / "wr.partial.json").exists()
    code, out, err = run(capsys, *args, "--allow-partial")
    assert code == 0 and "policies" in json.loads(report.read_text())


def test_consistency_with_no_comparable_pair_is_not_exit_0(env, capsys):
    """Rankings of responses the ratings do not have: the two files do not belong together (bad input, 1)."""
    ratings = env / "ratings.json"
    ratings.write_text(json.dumps([{"instruction": "q", "input": "", "response": "a", "score": 5}]))
    rankings = env / "rankings.json"
    rankings.write_text(json.dumps([{"instruction": "q", "input": "", "response1": "x", "response2": "y",
                                     "decision": "a"}]))
    report = env / "c.json"
    report.write_text("{}")
    code, _, err = run(capsys, "consistency", "--ratings", ratings, "--rankings", rankings, "--json", report,
                       "--bootstrap", "0")
    assert code == 1 and len(err.strip().splitlines()) == 1 and report.read_text() == "{}"
    assert "none of the 1 ranked pairs can be compared" in err and "rankings.json" in err


# ----------------------------------------------------------------------------- AlpacaEval annotations.json

def test_winrate_reads_alpaca_eval_annotations_and_soft_equals_its_continuous_win_rate(env, capsys):
    """AlpacaEval's win rate is mean(preference - 1) x 100 over the annotated rows, a preference of 0
    (identical outputs) counting 1.5 and a null one (a failed annotation) left out."""
    prefs = [1.3, 2.0, 1.0, 1.5, 1.8, 0, None, 1.05, 1.62]
    instructions = [f"Question {i}?" for i in range(len(prefs))]
    ref = [{"instruction": q, "output": f"reference answer {i}", "generator": "ref", "dataset": "koala"}
           for i, q in enumerate(instructions)]
    pol = [{"instruction": q, "output": f"policy answer {i}" if p != 0 else f"reference answer {i}",
            "generator": "pol", "dataset": "koala"} for i, (q, p) in enumerate(zip(instructions, prefs))]
    annotations = [{"instruction": r["instruction"], "output_1": r["output"], "generator_1": "ref",
                    "output_2": p["output"], "generator_2": "pol", "annotator": "weighted_alpaca_eval_gpt4_turbo",
                    "preference": x} for r, p, x in zip(ref, pol, prefs)]
    for name, rows in (("ref.json", ref), ("pol.json", pol), ("annotations.json", annotations)):
        (env / name).write_text(json.dumps(rows))
    counted = [1.5 if x == 0 else x for x in prefs if x is not None]
    alpaca_eval = 100 * sum(x - 1 for x in counted) / len(counted)

    code, out, err = run(capsys, "winrate", "--policy", env / "pol.json", "--reference", env / "ref.json",
                         "--rankings", env / "annotations.json", "--verdicts", "soft", "--n-boot", "10",
                         "--json", env / "wr.json")
    assert code == 0, err
    result = json.loads((env / "wr.json").read_text())["policies"]["pol"]["results"]["ranking"]
    assert result["n"] == len(counted)
    assert result["winrate"] == pytest.approx(alpaca_eval, abs=1e-9)
    code, out, err = run(capsys, "winrate", "--policy", env / "pol.json", "--reference", env / "ref.json",
                         "--rankings", env / "annotations.json", "--n-boot", "10", "--json", env / "hard.json")
    hard = json.loads((env / "hard.json").read_text())["policies"]["pol"]["results"]["ranking"]
    assert code == 0 and hard["winrate"] != pytest.approx(alpaca_eval)  # hard verdicts round 1.3 to a loss


def test_csv_fields_of_any_size_are_read(env, capsys):
    import csv

    big = "word " * 60_000  # 300 KB, over the csv module's default 128 KiB field limit
    path = env / "big.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["instruction", "input", "output", "score"])
        w.writerow(["Say a lot.", "", big, 5])
    from sflib import io

    assert io.read_ratings(path)["response"].iloc[0] == big
    assert io.read_responses(path)["response"].iloc[0] == big
    code, _, err = run(capsys, "convert", path, env / "big.jsonl", "--from", "ratings")
    assert code == 0, err


# ----------------------------------------------------------------------------- 130: Ctrl-C

SIGINT_ARGS = {
    "rate": ["rate", "--judge", "openai:gpt-4o-mini", "--input", "{gen}", "--output", "{tmp}/o.jsonl",
             "--store", "{tmp}/st.sqlite", "--quiet", "--concurrency", "2"],
    "rank": ["rank", "--judge", "openai:gpt-4o-mini", "--input", "{gen}", "--output", "{tmp}/o.jsonl",
             "--store", "{tmp}/st.sqlite", "--quiet", "--concurrency", "2"],
    "generate": ["generate", "--instructions", "{gen}", "--policy", "openai:pol", "--k", "2",
                 "--output", "{tmp}/g.jsonl", "--store", "{tmp}/st.sqlite"],
    "winrate": ["winrate", "--policy", "{pol}", "--reference", "{ref}", "--judge", "openai:gpt-4o-mini",
                "--store", "{tmp}/st.sqlite", "--concurrency", "2"],
}


@pytest.mark.parametrize("command", list(SIGINT_ARGS))
def test_sigint_is_130_with_one_line_and_no_traceback(env, fake_openai_factory, command):
    server = fake_openai_factory(latency=0.4)
    gen = responses_file(env / "gen.json")
    pol, ref = outputs_file(env / "pol.json", "pol", "policy"), outputs_file(env / "ref.json", "ref", "reference")
    args = [a.format(tmp=env, gen=gen, pol=pol, ref=ref) for a in SIGINT_ARGS[command]]
    proc_env = dict(os.environ, OPENAI_BASE_URL=server.url, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "sflib", *args], cwd=env, env=proc_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start = time.monotonic()
    while server.requests < 2 and time.monotonic() - start < 120 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err + out and "KeyboardInterrupt" not in err + out
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: ") and last.endswith("in flight, re-run to finish"), err
    assert "sk-test-not-a-secret" not in err + out
