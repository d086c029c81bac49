"""The study: validation, the folder (save / read / atomicity / staleness), paper seeding, the plan."""
from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pandas as pd
import pytest

from sflib import io as sfio
from sflib.core.prompts import alpaca_prompt
from sflib.feedback.rankings import ranking_request
from sflib.feedback.ratings import rating_request
from sflib.feedback.store import AnnotationStore
from sflib.study import StageMissing, StaleStage, StudyConfigError, load
from sflib.study.config import SEEDABLE
from sflib.study.planner import plan, status
from sflib.study.seed import SEED_TABLES


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("SFLIB_OUTPUTS", str(out))
    monkeypatch.delenv("SFLIB_PRICES", raising=False)
    return out


INSTRUCTIONS = [{"instruction": "Name a colour.", "input": ""},
                {"instruction": "Add the numbers.", "input": "2 and 3"}]
REFERENCE = [{"instruction": f"Question {i}?", "output": "Answer " * (i + 1), "generator": "ref", "dataset": "koala"}
             for i in range(3)]


def write_study(folder, text: str, name="tiny.yaml"):
    (folder / "instructions.jsonl").write_text("\n".join(json.dumps(r) for r in INSTRUCTIONS) + "\n")
    (folder / "reference.json").write_text(json.dumps(REFERENCE))
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


TINY = """\
name: tiny
budget_usd: 1.0
instructions:
  paths: [instructions.jsonl]
policy:
  name: local:smollm2
  k: 3
  max_new_tokens: 10
feedback:
  judge: openai:gpt-4o-mini
best_of_n:
  n: 4
  reference: reference.json
  datasets: null
  max_new_tokens: 8
evaluation:
  judge: openai:gpt-4o-mini
"""


# ----------------------------------------------------------------------------- validation

@pytest.mark.parametrize("change, where, what", [
    ("feedback:\n  judge: recorded\n  jduge: x\n", "feedback.jduge", "unknown key"),
    ("policy:\n  k: five\n", "policy.k", "integer"),
    ("instructions:\n  paths: [missing.jsonl]\n", "instructions.paths[0]", "file not found"),
    ("feedback:\n  judge: gtp-4o\n", "feedback.judge", "unknown judge 'gtp-4o'"),
    ("evaluation:\n  protocols: [rating, votes]\n", "evaluation.protocols[1]", "rating"),
    ("colour: blue\n", "colour", "unknown key"),
])
def test_bad_study_file_names_file_and_key(tmp_path, change, where, what):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\n" + change)
    with pytest.raises(StudyConfigError) as e:
        load(path)
    message = str(e.value)
    assert message.startswith(f"{path}: {where}: "), message
    assert what in message
    assert "\n" not in message


def test_cli_reports_a_bad_study_in_one_line(tmp_path, capsys):
    from sflib.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nfeedback:\n  judge: gtp-4o\n")
    assert main(["study", "plan", str(path)]) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: feedback.judge: unknown judge 'gtp-4o'; known judges: ")
    assert "gpt-4o-mini" in lines[0]          # the shipped judge files are listed


def test_the_shipped_studies_are_valid():
    for name in ("paper", "example", "paper_full_scale"):
        assert load(name).config.name in ("paper", "example", "paper-full-scale")


# ----------------------------------------------------------------------------- the folder

def test_save_read_round_trip_and_manifest(tmp_path, outputs):
    study = load(write_study(tmp_path, TINY))
    assert study.folder == outputs / "studies" / "tiny"
    resp = pd.DataFrame({"instruction_id": ["i1", "i1"], "response_id": ["r1", "r2"], "instruction": ["x", "x"],
                         "input": ["", ""], "response": ["a", "b"]})
    study.save("responses", tables={"responses": resp}, counts={"n": 2, "failed": 0}, policy="local:smollm2")
    pd.testing.assert_frame_equal(study.read("responses"), resp)
    m = study.manifest("responses")
    assert m["study_hash"] == study.stage_hash("responses") and m["counts"] == {"n": 2, "failed": 0}
    assert m["policy"] == "local:smollm2" and m["files"] == ["responses.jsonl"] and m["inputs"] == {}
    # no absolute path of this machine in a manifest: a study outside the repository is named by its file name
    assert m["study_file"] == "tiny.yaml" and str(tmp_path) not in json.dumps(m)
    assert load("paper").spec_for_manifest() == "studies/paper.yaml"
    rat = resp.assign(score=[3, 7])
    study.save("ratings", tables={"ratings": rat}, inputs=["responses"], judge="openai:gpt-4o-mini")
    assert study.manifest("ratings")["inputs"] == {"responses": study.manifest_hash("responses")}
    assert study.read("ratings")["score"].tolist() == [3, 7]
    st = status(study).set_index("stage")
    assert st.loc[["responses", "ratings", "rankings"], "state"].tolist() == ["done", "done", "missing"]
    # spent: a local policy and a stage not run cost nothing; a judge stage that recorded no cost is unknown
    assert st.loc["responses", "spent_usd"] == 0 and st.loc["rankings", "spent_usd"] == 0
    assert np.isnan(st.loc["ratings", "spent_usd"])
    study.save("consistency", tables={"pairs": resp}, counts={"n": 1})
    assert status(study).set_index("stage").loc["consistency", "spent_usd"] == 0  # a local computation
    # a judge run that recorded cost_usd None: unknown for a priced provider, $0 for a human (no API cost)
    for judge, free in (("openai:gpt-4o-mini", False), ("human:alice", True)):
        study.save("rankings", tables={"rankings": resp}, inputs=["responses"], judge=judge,
                   counts={"n": 1, "valid": 0, "cost_usd": None})
        cost = status(study).set_index("stage").loc["rankings", "spent_usd"]
        assert (cost == 0) if free else np.isnan(cost)


def test_a_failing_save_leaves_the_previous_output_intact(tmp_path, outputs, monkeypatch):
    study = load(write_study(tmp_path, TINY))
    old = pd.DataFrame({"a": [1, 2]})
    study.save("consistency", tables={"pairs": old, "extra": old}, counts={"n": 2})
    before = {p.name: p.read_bytes() for p in study.stage_dir("consistency").iterdir()}
    real = pd.DataFrame.to_json
    calls = []

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_json", flaky)
    with pytest.raises(OSError, match="disk full"):
        study.save("consistency", tables={"pairs": pd.DataFrame({"a": [9]}), "extra": old}, counts={"n": 1})
    after = {p.name: p.read_bytes() for p in study.stage_dir("consistency").iterdir()}
    assert after == before  # no table replaced, manifest unchanged, no temporary file left
    assert study.read("consistency")["a"].tolist() == [1, 2]


def test_stage_missing_names_the_notebook_to_run(tmp_path, outputs):
    path = write_study(tmp_path, TINY)
    study = load(path)
    with pytest.raises(StageMissing) as e:
        study.read("ratings")
    assert f"run 02_ratings first (python -m sflib study run {path} --only 02)" in str(e.value)
    with pytest.raises(StageMissing, match="input responses has no output; run 01_generate first"):
        study.save("ratings", tables={"ratings": pd.DataFrame({"a": [1]})}, inputs=["responses"])


def test_changed_study_section_makes_downstream_stale(tmp_path, outputs):
    path = write_study(tmp_path, TINY)
    study = load(path)
    study.save("responses", tables={"responses": pd.DataFrame({"x": [1]})})
    study.save("ratings", tables={"ratings": pd.DataFrame({"x": [1]})}, inputs=["responses"])
    study.save("reward_models", tables={"metrics": pd.DataFrame({"x": [1]})}, inputs=["responses"])
    path.write_text(path.read_text().replace("judge: openai:gpt-4o-mini\nbest_of_n",
                                             "judge: openai:gpt-4o\nbest_of_n"))
    changed = load(path)
    assert changed.read("responses")["x"].tolist() == [1]        # feedback is not an input of responses
    # the reason names the section that changed, not every section the stage depends on
    with pytest.raises(StaleStage, match=r"stage ratings is stale: study section feedback changed since it was written;"):
        changed.read("ratings")
    assert changed.state("reward_models") == "stale"              # downstream of feedback too
    assert changed.stale_reasons("reward_models") == ["study section feedback changed since it was written"]
    manifest = changed.manifest_path("ratings")                   # a manifest written before section_hashes
    m = json.loads(manifest.read_text())
    del m["section_hashes"]
    manifest.write_text(json.dumps(m))
    assert changed.stale_reasons("ratings") == [
        "the study sections it depends on (seed, instructions, policy, feedback) changed since it was written"]
    # rewriting an input makes the stages that read it stale, even with an unchanged study file
    study.save("responses", tables={"responses": pd.DataFrame({"x": [2]})})
    with pytest.raises(StaleStage, match="its input responses was rewritten since; re-run 02_ratings"):
        study.read("ratings")


def test_an_edited_data_file_makes_its_stages_stale(tmp_path, outputs):
    """Editing the instructions file (or the reference) after a run, with the study file unchanged, is a
    stale reason naming the file, for the stage that read it and every stage after it."""
    path = write_study(tmp_path, TINY)
    study = load(path)
    study.save("responses", tables={"responses": pd.DataFrame({"x": [1]})})
    study.save("ratings", tables={"ratings": pd.DataFrame({"x": [1]})}, inputs=["responses"])
    study.save("best_of_n", tables={"samples": pd.DataFrame({"x": [1]})})
    assert [study.state(s) for s in ("responses", "ratings", "best_of_n")] == ["done"] * 3
    with open(tmp_path / "instructions.jsonl", "a") as f:
        f.write(json.dumps({"instruction": "Name a fruit.", "input": ""}) + "\n")
    with pytest.raises(StaleStage, match=r"responses is stale: the data file instructions.jsonl was edited since"):
        study.read("responses")
    assert study.stale_reasons("ratings") == ["the data file instructions.jsonl was edited since it was written"]
    assert study.state("best_of_n") == "stale"        # best_of_n's chain starts at the responses too
    (tmp_path / "reference.json").write_text(json.dumps(REFERENCE[:2]))
    assert "the data file reference.json was edited since it was written" in study.stale_reasons("best_of_n")
    study.save("responses", tables={"responses": pd.DataFrame({"x": [2]})})    # re-run: current again
    assert study.state("responses") == "done" and study.state("ratings") == "stale"


# ----------------------------------------------------------------------------- paper seeding

def test_paper_seeding_gives_the_canonical_tables(outputs):
    study = load("paper")
    assert set(study.config.seeded_from_data) == set(SEEDABLE)
    for stage, tables in SEED_TABLES.items():
        for name, src in tables.items():
            canonical = sfio.read_table(study_root() / "data" / "canonical" / f"{src}.jsonl")
            got = study.read(stage, name)          # seeded on first read
            if name.endswith("_outputs"):
                canonical = canonical[["instruction", "output", "generator", "dataset"]]
            pd.testing.assert_frame_equal(got, canonical, check_dtype=False)
        m = study.manifest(stage)
        assert m["seeded_from"] == [f"data/canonical/{s}.jsonl" for s in tables.values()]
        assert study.state(stage) == "seeded"
    assert study.manifest("ratings")["inputs"] == {"responses": study.manifest_hash("responses")}
    assert (study.stage_dir("best_of_n") / "ratings_outputs.json").exists()
    with pytest.raises(StageMissing, match="run 04_consistency first"):
        study.read("consistency")


def study_root():
    from sflib.core.paths import root

    return root()


# ----------------------------------------------------------------------------- the plan

def test_plan_numbers_of_a_small_study(tmp_path, outputs):
    study = load(write_study(tmp_path, TINY))
    with AnnotationStore(outputs / "annotations.sqlite") as store:  # 4 stored answers of this judge, to other prompts
        for i in range(4):
            store.put(f"k{i}", judge="openai:gpt-4o-mini", model="gpt-4o-mini", template_version="rating-v1",
                      params={}, messages=[], meta={}, status="ok", raw="Score: 5", value=5, valid=True,
                      error=None, prompt_tokens=1000, completion_tokens=100, latency_s=0.1, attempts=1)
    df = plan(study).set_index("stage")
    tok = lambda chars: math.ceil(chars / 4)  # noqa: E731
    usd = lambda i, o: (i * 0.15 + o * 0.60) / 1e6  # noqa: E731  gpt-4o-mini list price
    ph = "x" * 40                                    # a response not yet written: max_new_tokens x 4 characters
    msgs = lambda r: sum(len(m["content"]) for m in r.messages)  # noqa: E731

    r = df.loc["responses"]
    assert (r["calls"], r["output_tokens"], r["usd"]) == (6, 60, 0.0)
    assert r["input_tokens"] == tok(3 * sum(len(alpaca_prompt(x["instruction"], x["input"])) for x in INSTRUCTIONS))

    r = df.loc["ratings"]
    in_tok = tok(3 * sum(msgs(rating_request(x["instruction"], x["input"], ph)) for x in INSTRUCTIONS))
    # the responses are not written yet, so none of these ratings can be stored (the 4 are other prompts)
    assert (r["calls"], r["stored"], r["input_tokens"], r["output_tokens"]) == (6, 0, in_tok, 6 * 64)
    assert r["usd"] == pytest.approx(usd(in_tok, 384)) and r["usd_to_pay"] == pytest.approx(usd(in_tok, 384))

    r = df.loc["rankings"]                           # 3 pairs x 2 orders per instruction
    in_tok = tok(6 * sum(msgs(ranking_request(x["instruction"], x["input"], ph, ph)) for x in INSTRUCTIONS))
    assert (r["calls"], r["stored"], r["input_tokens"], r["output_tokens"]) == (12, 0, in_tok, 12 * 64)
    assert r["usd"] == pytest.approx(usd(in_tok, 768))

    r = df.loc["best_of_n"]
    assert (r["calls"], r["output_tokens"]) == (12, 96)
    assert r["input_tokens"] == tok(4 * sum(len(alpaca_prompt(x["instruction"])) for x in REFERENCE))

    r = df.loc["evaluation"]                         # rating: 2 policies + reference; ranking: 2 x 2 orders
    out = "x" * 32
    chars = sum(msgs(rating_request(x["instruction"], "", x["output"])) + 2 * msgs(rating_request(x["instruction"], "", out))
                + 2 * (msgs(ranking_request(x["instruction"], "", x["output"], out))
                       + msgs(ranking_request(x["instruction"], "", out, x["output"]))) for x in REFERENCE)
    assert (r["calls"], r["input_tokens"], r["output_tokens"]) == (21, tok(chars), 21 * 64)

    total = df.loc["total"]
    assert total["calls"] == 6 + 6 + 12 + 12 + 21
    assert total["usd"] == pytest.approx(df.drop(index="total")["usd"].sum())
    assert df.loc[["consistency", "reward_models"], "calls"].tolist() == [0, 0]


def test_batch_mode_prices_the_judge_stages_at_half(tmp_path, outputs):
    online = plan(load(write_study(tmp_path, TINY))).set_index("stage")
    batch_text = TINY.replace("feedback:\n  judge: openai:gpt-4o-mini\n",
                              "feedback:\n  judge: openai:gpt-4o-mini\n  mode: batch\n")
    batch_text = batch_text.replace("evaluation:\n  judge: openai:gpt-4o-mini\n",
                                    "evaluation:\n  judge: openai:gpt-4o-mini\n  mode: batch\n")
    assert batch_text.count("mode: batch") == 2
    batch = plan(load(write_study(tmp_path, batch_text, name="tiny_batch.yaml"))).set_index("stage")
    judged = ["ratings", "rankings", "evaluation"]
    assert online.loc[judged, "mode"].tolist() == ["online"] * 3
    assert batch.loc[judged, "mode"].tolist() == ["batch"] * 3
    assert batch.loc["responses", "mode"] == "online"          # the local policy is not batched
    for col in ("calls", "input_tokens", "output_tokens"):      # same work, only the price differs
        assert batch[col].tolist() == online[col].tolist()
    assert online.loc["total", "usd"] > 0
    for stage in judged + ["total"]:
        assert batch.loc[stage, "usd"] == pytest.approx(online.loc[stage, "usd"] / 2, rel=1e-12)


def test_plan_counts_one_request_per_instruction_for_a_server_policy(tmp_path, outputs):
    """A policy on a server asks k samples in one request with n: k times fewer calls, the prompt once."""
    tok = lambda chars: math.ceil(chars / 4)  # noqa: E731
    prompts = sum(len(alpaca_prompt(x["instruction"], x["input"])) for x in INSTRUCTIONS)
    server = TINY.replace("local:smollm2", "openai:gpt-4o-mini")
    r = plan(load(write_study(tmp_path, server))).set_index("stage").loc["responses"]
    assert (r["calls"], r["input_tokens"], r["output_tokens"]) == (len(INSTRUCTIONS), tok(prompts), 3 * len(INSTRUCTIONS) * 10)
    assert "one request with n" in r["note"]
    (tmp_path / "one_each.yaml").write_text("provider: openai\nmodel: gpt-4o-mini\nn_per_request: false\n")
    one_each = TINY.replace("local:smollm2", str(tmp_path / "one_each.yaml"))
    r = plan(load(write_study(tmp_path, one_each, name="one_each_study.yaml"))).set_index("stage").loc["responses"]
    assert (r["calls"], r["input_tokens"]) == (3 * len(INSTRUCTIONS), tok(3 * prompts))
    assert r["usd"] > 0


def test_judge_and_policy_files_beside_the_study_file_are_found(tmp_path, outputs, monkeypatch):
    """A study names its own policy file (a relative path) and judge (a name in its judges/ folder);
    both are found from any working directory, and a missing one names the folders looked in."""
    folder = tmp_path / "my_study"
    (folder / "judges").mkdir(parents=True)
    (folder / "my_policy.yaml").write_text("provider: openai\nmodel: my-server-model\nbase_url: http://127.0.0.1:9/v1\n"
                                           "api_key_env: null\nprice_input_per_mtok: 0\nprice_output_per_mtok: 0\n")
    (folder / "judges" / "my-judge.yaml").write_text("provider: openai\nmodel: my-judge-model\n"
                                                     "price_input_per_mtok: 1.0\nprice_output_per_mtok: 2.0\n")
    text = TINY.replace("local:smollm2", "my_policy.yaml").replace("judge: openai:gpt-4o-mini", "judge: my-judge")
    path = write_study(folder, text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    df = plan(load(path)).set_index("stage")
    assert df.loc["responses", "name"] == "my_policy.yaml" and df.loc["responses", "usd"] == 0
    assert df.loc["ratings", "name"] == "my-judge" and df.loc["ratings", "usd"] > 0  # its own prices
    (folder / "missing.yaml").unlink(missing_ok=True)
    with pytest.raises(StudyConfigError, match=r"policy.name: .*missing.yaml does not exist \(looked in"):
        load(write_study(folder, TINY.replace("local:smollm2", "missing.yaml"), name="broken.yaml"))


def test_full_scale_plan_counts_the_papers_calls():
    df = plan(load("paper_full_scale")).set_index("stage")
    assert df.loc["responses", "calls"] == 5000 * 5
    assert df.loc["ratings", "calls"] == 5000 * 5
    assert df.loc["rankings", "calls"] == 5000 * 10 * 2
    assert df.loc["best_of_n", "calls"] == 553 * 64
    assert df.loc["evaluation", "calls"] == 553 * 3 + 553 * 2 * 2
    assert "counted 5000" in df.loc["ratings", "note"]
    assert 10 < df.loc["total", "usd"] < load("paper_full_scale").config.budget_usd


def test_paper_plan_pays_nothing(outputs):
    df = plan(load("paper")).set_index("stage")
    assert df["usd"].sum() == 0
    assert df.loc[["responses", "ratings", "rankings", "best_of_n"], "calls"].sum() == 0


def test_save_copies_files_and_folders_and_reads_json_tables(tmp_path, outputs):
    study = load(write_study(tmp_path, TINY))
    model = tmp_path / "ratings"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\0" * 10)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"ratings": {"mse": 0.5}, "rankings": {"accuracy": 0.75}}))
    study.save("reward_models", files=[model, metrics], counts={"n": 2})
    folder = study.stage_dir("reward_models")
    assert (folder / "ratings" / "weights.bin").read_bytes() == b"\0" * 10
    m = study.manifest("reward_models")
    assert m["files"] == ["metrics.json", "ratings"] and set(m["sha256"]) == {"metrics.json", "ratings"}
    assert study.read("reward_models").loc[0, "rankings.accuracy"] == 0.75
    assert study.path_of("reward_models", "metrics.json") == folder / "metrics.json"
    (model / "weights.bin").write_bytes(b"\1" * 10)            # a retrained model replaces the folder
    study.save("reward_models", files=[model, metrics])
    assert (folder / "ratings" / "weights.bin").read_bytes() == b"\1" * 10
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "metrics.json", "ratings"]


def test_cli_plan_and_status_print_their_tables(capsys, outputs):
    from sflib.cli import main

    assert main(["study", "plan", "paper_full_scale"]) == 0
    out = capsys.readouterr().out
    total = [line for line in out.splitlines() if line.strip().startswith("total")][0]
    assert "189,263" in total and "$" in total
    assert "budget_usd: $150.00" in out
    assert main(["study", "status", "paper"]) == 0
    out = capsys.readouterr().out
    assert "02_ratings/" in out and "missing" in out


def test_plan_uses_the_written_responses_and_inputs_apply_the_filters(tmp_path, outputs):
    from sflib.study import inputs

    study = load(write_study(tmp_path, TINY))
    resp = pd.DataFrame({"instruction_id": ["i1", "i1", "i2"], "response_id": ["r1", "r2", "r3"],
                         "instruction": ["Name a colour.", "Name a colour.", "Add."], "input": ["", "", "2 and 3"],
                         "response": ["Red.", "Blue is a colour.", "5"]})
    study.save("responses", tables={"responses": resp})
    df = plan(study).set_index("stage")
    assert df.loc["responses", "stored"] == df.loc["responses", "calls"] == 6 and df.loc["responses", "usd_to_pay"] == 0
    msgs = lambda r: sum(len(m["content"]) for m in r.messages)  # noqa: E731
    assert df.loc["ratings", "calls"] == 3
    assert df.loc["ratings", "input_tokens"] == math.ceil(sum(
        msgs(rating_request(i, x, r)) for i, x, r in zip(resp["instruction"], resp["input"], resp["response"])) / 4)
    assert df.loc["rankings", "calls"] == 2               # one pair (i1), both orders; i2 has a single response
    assert len(inputs.instructions(study)) == 2
    study.config.instructions.max_chars = 15               # "Name a colour." (14) stays, "Add the numbers." + input goes
    assert inputs.instructions(study)["instruction"].tolist() == ["Name a colour."]
    paper = load("paper")
    ev = inputs.evaluation_instructions(paper)
    assert len(ev) == 553 and set(ev["dataset"]) == {"helpful_base", "koala", "oasst", "vicuna"}
    paper.config.best_of_n.sample = 12
    assert len(inputs.evaluation_instructions(paper)) == 12


def test_a_stage_saved_empty_reads_back_empty_with_its_columns(tmp_path, outputs):
    """A noisy judge can leave a stage with nothing valid: it is saved (with its reason) and reads back empty."""
    study = load(write_study(tmp_path, TINY))
    empty = pd.DataFrame(columns=["instruction_id", "response_id", "score"])
    study.save("responses", tables={"responses": empty}, counts={"n": 0}, notes="policy server unreachable")
    got = study.read("responses")
    assert got.empty and list(got.columns) == ["instruction_id", "response_id", "score"]
    assert study.manifest("responses")["notes"] == "policy server unreachable"


def test_instruction_sample_survives_an_added_row_and_a_reordered_file(tmp_path, outputs):
    """``instructions.sample`` picks by a seeded hash of each id: adding one instruction to the file (or
    reordering it) does not reshuffle the sample, so the work already done on it is kept."""
    from sflib.study import inputs

    rows = [{"instruction": f"Task number {i}.", "input": ""} for i in range(30)]
    path = write_study(tmp_path, TINY.replace("  paths: [instructions.jsonl]", "  paths: [many.jsonl]\n  sample: 10"))
    many = tmp_path / "many.jsonl"
    many.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    before = set(inputs.instructions(load(path))["instruction"])
    assert len(before) == 10
    many.write_text("\n".join(json.dumps(r) for r in rows[::-1] + [{"instruction": "A new task."}]) + "\n")
    after = set(inputs.instructions(load(path))["instruction"])
    assert len(after) == 10 and len(before - after) <= 1 and after - before <= {"A new task."}
    other_seed = tmp_path / "seed1.yaml"
    other_seed.write_text("seed: 1\n" + path.read_text())
    assert set(inputs.instructions(load(other_seed))["instruction"]) != after   # the seed still decides it
    assert plan(load(path)).set_index("stage").loc["responses", "calls"] == 10 * 3


def test_an_evaluation_instruction_without_a_reference_output_is_refused(tmp_path, outputs):
    """``best_of_n.instructions`` naming an instruction the reference lacks: one error naming the file, row
    and field, before notebook 06 samples for it (07 could only ignore it)."""
    from sflib.study import inputs

    mine = [{"instruction": "Question 1?", "dataset": "mine", "output": ""},
            {"instruction": "Question 0?", "dataset": "yours", "output": ""}]
    (tmp_path / "eval.json").write_text(json.dumps(mine))
    path = write_study(tmp_path, TINY.replace("  datasets: null", "  datasets: null\n  instructions: eval.json"))
    ev = inputs.evaluation_instructions(load(path))
    assert ev["dataset"].tolist() == ["mine", "yours"] and ev["output"].tolist() == ["Answer Answer ", "Answer "]
    (tmp_path / "eval.json").write_text(json.dumps(mine + [{"instruction": "Tell me a joke.", "dataset": "fun", "output": ""}]))
    with pytest.raises(StudyConfigError, match=r"eval.json: row 3, field instruction: 'Tell me a joke.' has no "
                                               r"reference output in reference.json \(1 instruction"):
        inputs.evaluation_instructions(load(path))


def test_extra_judges_are_planned_for_ratings_only(tmp_path, outputs):
    """extra_judges rate the responses (notebook 02); only the feedback judge ranks (notebook 03), so the
    plan and the budget check must not count ranking calls of the extra judges."""
    one = plan(load(write_study(tmp_path, TINY)))
    panel_text = TINY.replace("feedback:\n  judge: openai:gpt-4o-mini\n",
                              "feedback:\n  judge: openai:gpt-4o-mini\n  extra_judges: [openai:gpt-4o]\n")
    panel = plan(load(write_study(tmp_path, panel_text, name="panel.yaml")))
    ratings = panel[panel["stage"] == "ratings"]
    assert ratings["name"].tolist() == ["openai:gpt-4o-mini", "openai:gpt-4o"]
    rankings = panel[panel["stage"] == "rankings"]
    assert rankings["name"].tolist() == ["openai:gpt-4o-mini"]
    assert rankings["calls"].tolist() == one.loc[one["stage"] == "rankings", "calls"].tolist()
    extra = ratings.loc[ratings["name"] == "openai:gpt-4o", "usd"].iloc[0]
    assert panel["usd"].iloc[-1] == pytest.approx(one["usd"].iloc[-1] + extra)


def test_stored_counts_only_this_studys_own_requests_in_a_shared_store(tmp_path, outputs):
    """The annotation store is shared by studies: another study's answers from the same judge and template
    must not count as stored for this one (the plan would say $0 to pay and the budget check would pass)."""
    from sflib.feedback.annotate import request_key
    from sflib.feedback.ratings import resolve_judge

    study = load(write_study(tmp_path, TINY))
    resp = pd.DataFrame({"instruction_id": ["i1", "i1", "i2"], "response_id": ["r1", "r2", "r3"],
                         "instruction": ["Name a colour.", "Name a colour.", "Add."], "input": ["", "", "2 and 3"],
                         "response": ["Red.", "Blue is a colour.", "5"]})
    judge = resolve_judge("openai:gpt-4o-mini")

    def put(store, request, version):
        store.put(request_key(judge, request, version), judge=judge.name, model="gpt-4o-mini",
                  template_version=version, params=judge.params, messages=request.messages, meta={}, status="ok",
                  raw="Score: 5", value=5, valid=True, error=None, prompt_tokens=100, completion_tokens=10,
                  latency_s=0.1, attempts=1)

    with AnnotationStore(outputs / "annotations.sqlite") as store:   # another study's answers, same judge + templates
        for i in range(10):
            put(store, rating_request("Other?", "", f"other response {i}"), "rating-v1")
            put(store, ranking_request("Other?", "", f"a{i}", f"b{i}", "12"), "ranking-v1")
    df = plan(study).set_index("stage")                  # responses not written yet: nothing of this study is stored
    assert df.loc["ratings", "stored"] == 0 and df.loc["rankings", "stored"] == 0
    assert df.loc["evaluation", "stored"] == 0           # same judge and rating template as the other study's 10
    assert df.loc["evaluation", "usd_to_pay"] == pytest.approx(df.loc["evaluation", "usd"])
    assert df.loc["ratings", "usd"] > 0 and df.loc["ratings", "usd_to_pay"] == pytest.approx(df.loc["ratings", "usd"])
    study.save("responses", tables={"responses": resp})
    df = plan(study).set_index("stage")
    assert (df.loc["ratings", "stored"], df.loc["rankings", "stored"]) == (0, 0)
    with AnnotationStore(outputs / "annotations.sqlite") as store:   # this study's own answers: 2 ratings, 1 order
        put(store, rating_request("Name a colour.", "", "Red."), "rating-v1")
        put(store, rating_request("Add.", "2 and 3", "5"), "rating-v1")
        put(store, ranking_request("Name a colour.", "", "Red.", "Blue is a colour.", "21"), "ranking-v1")
    df = plan(study).set_index("stage")
    assert (df.loc["ratings", "calls"], df.loc["ratings", "stored"]) == (3, 2)
    assert (df.loc["rankings", "calls"], df.loc["rankings", "stored"]) == (2, 1)
    assert df.loc["ratings", "usd_to_pay"] == pytest.approx(df.loc["ratings", "usd"] / 3)


def test_spent_prices_batch_answers_at_batch_prices_and_counts_a_model_once(tmp_path, outputs):
    """Answers collected from a Batch API job cost the batch price; a judge file and openai:<model> naming
    the same model (feedback and evaluation judges) share the store's rows and are counted once."""
    import sqlite3

    from sflib.study.planner import spent

    text = TINY.replace("feedback:\n  judge: openai:gpt-4o-mini\n", "feedback:\n  judge: gpt-4o-mini-logprobs\n")
    study = load(write_study(tmp_path, text))
    assert spent(study) == 0.0
    with AnnotationStore(outputs / "annotations.sqlite") as store:
        for key in ("online", "batched", "marked"):
            store.put(key, judge="openai:gpt-4o-mini", model="gpt-4o-mini", template_version="rating-v1",
                      params={}, messages=[], meta={}, status="ok", raw="Score: 5", value=5, valid=True,
                      error=None, prompt_tokens=1_000_000, completion_tokens=1_000_000, latency_s=0.1, attempts=1)
    con = sqlite3.connect(outputs / "annotations.sqlite")
    with con:
        # a store written before answers were marked keeps its collected lines; a newer one marks the answer
        con.execute("INSERT INTO batch_requests (local_id, key, body, meta, state) VALUES ('job', 'batched', '{}', '{}', 'done')")
        con.execute("UPDATE annotations SET batch = 1 WHERE key = 'marked'")
    con.close()
    assert spent(study) == pytest.approx((0.15 + 0.60) + 2 * (0.075 + 0.30))


def test_status_has_notebook_09s_row(tmp_path, outputs):
    """09 (feedback protocols) is a row of `study status`: missing, then done with its calls, the protocols that
    reuse 02/03's answers named, and its own calls' dollars."""
    from sflib.study.status import status

    study = load(write_study(tmp_path, TINY))
    row = status(study).set_index("stage").loc["protocols"]
    assert (row["notebook"], row["state"]) == ("09_protocols", "missing")
    assert row["detail"] == "protocols: rating-1-7, pairwise-3way"
    out = study.folder / "09_protocols"
    out.mkdir(parents=True)
    from sflib.protocols.study import inputs_fingerprint, state

    (out / "summary.json").write_text(json.dumps({"time": "2026-12-05T02:00:00Z", "quick": False,
                                                  "inputs": inputs_fingerprint(study),
                                                  "skipped": {"rubric": "judge recorded has no answers"}}))
    pd.DataFrame([{"protocol": "rating-1-7", "calls": 10, "invalid_rate": 0.0, "cost_usd": None},
                  {"protocol": "listwise-k", "calls": 4, "invalid_rate": 0.25, "cost_usd": 0.002}]
                 ).to_json(out / "protocols.jsonl", orient="records", lines=True)
    row = status(study).set_index("stage").loc["protocols"]
    assert (row["state"], row["n"], row["valid"], row["invalid"]) == ("done", 14, 13, 1)
    assert row["spent_usd"] == pytest.approx(0.002) and row["written"] == "2026-12-05T02:00:00Z"
    assert row["detail"] == ("protocols: rating-1-7 (02's answers: 10 calls), listwise-k (asked: 4 calls); "
                             "skipped: rubric: judge recorded has no answers")
    assert state(study, quick=False) == "done" and state(study, quick=True) == "stale"  # --skip-done reads this
    study.save("responses", tables={"responses": pd.DataFrame({"instruction_id": ["i1"], "response_id": ["r1"],
                                                               "instruction": ["Q"], "input": [""], "response": ["A"]})})
    assert status(study).set_index("stage").loc["protocols", "state"] == "stale"  # 01 changed since 09 ran
