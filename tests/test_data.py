"""Canonical records, the original layouts, and clear errors for bad input (sflib.core.data, sflib.io.convert_original)."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from sflib.io import convert_original as convert
from sflib.core import data as d
from sflib import io as sfio
from sflib.core.paths import data_dir

ORIG = data_dir() / "original"


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


# ----------------------------------------------------------------------------- ids and inputs

@pytest.mark.parametrize("value", [None, float("nan"), "", "  ", "nan", "NaN"])
def test_empty_input_forms_are_the_same(value):
    assert d.clean_input(value) == ""
    assert d.make_id("Say hi", value) == d.make_id("Say hi", "")


def test_ids_are_stable_and_distinguish_input():
    a = d.make_id("Translate", "hello")
    assert a == d.make_id("Translate", "hello")
    assert a != d.make_id("Translate", "hello!")
    assert a != d.make_id("Translate")
    assert len(a) == 16 and int(a, 16) >= 0
    # CRLF from a CSV round trip on Windows gives the same id
    assert d.make_id("line1\r\nline2") == d.make_id("line1\nline2")
    assert d.make_response_id(a, "x") != d.make_response_id(a, "y")


def test_dedupe_keeps_first():
    df = pd.DataFrame({"k": [1, 2, 1, 3, 2], "v": list("abcde")})
    out, dropped = d.dedupe(df, ["k"])
    assert dropped == 2 and out["v"].tolist() == ["a", "b", "d"]


# ----------------------------------------------------------------------------- the vendored originals

def test_vendored_originals_read_with_expected_counts():
    assert len(sfio.read_instructions(ORIG / "instructions/natural_instructions.json")) == 1000
    gen = sfio.read_responses(ORIG / "alpaca_generation/sample_generation.json")
    assert len(gen) == 100 and gen["instruction_id"].nunique() == 20
    ratings = sfio.read_ratings(ORIG / "alpaca_generation/feedback_ratings_sample_generation.csv")
    assert len(ratings) == 99 and set(ratings["score"]) <= set(range(1, 8))
    rankings = sfio.read_rankings(ORIG / "alpaca_generation/feedback_rankings_sample_generation.csv")
    assert len(rankings) == 118 and set(rankings["decision"]) == {"a", "b", "equal"}
    # the feedback files wrote the empty input as 'nan'; the request CSVs left it empty: same ids
    assert ratings["response_id"].isin(gen["response_id"]).all()
    assert rankings["response_id_1"].isin(gen["response_id"]).all()
    pairs = sfio.read_pairs(ORIG / "alpaca_generation/rankings_sample_generation.csv")
    assert len(pairs) == 200 and rankings["instruction_id"].isin(pairs["instruction_id"]).all()
    ref = sfio.read_model_outputs(ORIG / "inference_model_outputs/davinci003.json")[d.MODEL_OUTPUT_COLUMNS]
    assert len(ref) == 805 and (ref["dataset"] != "selfinstruct").sum() == 553


def test_all_pairs_counts_k_choose_2():
    gen = sfio.read_responses(ORIG / "alpaca_generation/sample_generation.json")
    pairs = d.all_pairs(gen)
    per = gen.drop_duplicates("response_id").groupby("instruction_id").size()
    assert len(pairs) == int((per * (per - 1) // 2).sum())
    assert (pairs["response_id_1"] != pairs["response_id_2"]).all()


def test_convert_original_writes_canonical_tables(tmp_path):
    summary = convert.convert_original(ORIG, tmp_path)
    assert set(summary["table"]) == {p.name for p in tmp_path.glob("*.jsonl")}
    ratings = sfio.read_table(tmp_path / "sample_ratings.jsonl", required=d.RATING_COLUMNS)
    assert len(ratings) == 99 and ratings["judge"].iloc[0] == convert.PAPER_JUDGE
    responses = sfio.read_table(tmp_path / "sample_responses.jsonl", required=d.RESPONSE_COLUMNS)
    assert responses["response_id"].is_unique and len(responses) == 98
    manifest = json.loads((tmp_path / "MANIFEST.json").read_text())
    assert {m["table"] for m in manifest} == set(summary["table"])


def test_committed_canonical_tables_are_current(tmp_path):
    """data/canonical must be what the converter writes today (re-run convert-original if this fails)."""
    convert.convert_original(ORIG, tmp_path)
    for path in tmp_path.glob("*.jsonl"):
        committed = data_dir() / "canonical" / path.name
        assert committed.exists(), f"{committed} is missing: run python -m sflib convert-original"
        assert committed.read_bytes() == path.read_bytes(), f"{committed} is stale: run python -m sflib convert-original"


# ----------------------------------------------------------------------------- round trips

def test_original_layouts_round_trip(tmp_path):
    ratings = sfio.read_ratings(ORIG / "alpaca_generation/feedback_ratings_sample_generation.csv")
    d.write_ratings_csv(ratings, tmp_path / "r.csv")
    again = sfio.read_ratings(tmp_path / "r.csv")
    pd.testing.assert_frame_equal(ratings, again)

    rankings = sfio.read_rankings(ORIG / "alpaca_generation/feedback_rankings_sample_generation.csv")
    d.write_rankings_csv(rankings, tmp_path / "k.csv")
    pd.testing.assert_frame_equal(rankings, sfio.read_rankings(tmp_path / "k.csv"))
    assert "(a)" in (tmp_path / "k.csv").read_text()

    gen = sfio.read_responses(ORIG / "alpaca_generation/sample_generation.json")
    d.write_generations(gen, tmp_path / "g.json")
    assert json.loads((tmp_path / "g.json").read_text()) == json.loads(
        (ORIG / "alpaca_generation/sample_generation.json").read_text())

    d.write_responses_csv(gen, tmp_path / "resp.csv")
    assert sfio.read_responses(tmp_path / "resp.csv")["response_id"].tolist() == gen["response_id"].tolist()
    pairs = d.all_pairs(gen)
    d.write_pairs_csv(pairs, tmp_path / "pairs.csv")
    assert sfio.read_pairs(tmp_path / "pairs.csv")["response_id_2"].tolist() == pairs["response_id_2"].tolist()

    outs = sfio.read_model_outputs(ORIG / "inference_model_outputs/ratings_alpaca.json")[d.MODEL_OUTPUT_COLUMNS]
    d.write_model_outputs(outs, tmp_path / "o.json")
    pd.testing.assert_frame_equal(outs, sfio.read_model_outputs(tmp_path / "o.json")[d.MODEL_OUTPUT_COLUMNS])

    ins = sfio.read_instructions(ORIG / "instructions/natural_instructions.json")
    d.write_instructions_json(ins, tmp_path / "i.json")
    assert sfio.read_instructions(tmp_path / "i.json")["id"].tolist() == ins["id"].tolist()


@pytest.mark.parametrize("ext", ["jsonl", "parquet"])
def test_tables_round_trip(tmp_path, ext):
    df = pd.DataFrame({"instruction": ["a", "b"], "input": ["", "x"], "score": [3, 7]})
    sfio.write_table(df, tmp_path / f"t.{ext}")
    back = sfio.read_table(tmp_path / f"t.{ext}", required=["score"])
    assert back["score"].tolist() == [3, 7] and back["input"].tolist() == ["", "x"]
    with pytest.raises(d.DataError, match="field 'decision'"):
        sfio.read_table(tmp_path / f"t.{ext}", required=["decision"])


def test_instructions_from_jsonl_csv_and_dedup(tmp_path):
    write(tmp_path / "i.jsonl", '{"instruction": "A", "input": ""}\n\n{"instruction": "A"}\n'
                                '{"instruction": "B", "input": "x", "dataset": "koala"}\n')
    df = sfio.read_instructions(tmp_path / "i.jsonl")
    assert df["instruction"].tolist() == ["A", "B"]           # duplicate A (no input = empty input) dropped
    assert df["source"].tolist() == ["i", "koala"]
    write(tmp_path / "i.csv", "instruction,input,extra\nA,,1\nC,nan,2\n")
    df = sfio.read_instructions(tmp_path / "i.csv", source="mine")
    assert df["input"].tolist() == ["", ""] and set(df["source"]) == {"mine"}


def test_a_csv_exported_by_pandas_with_its_index_column(tmp_path):
    """``DataFrame.to_csv`` writes the row numbers as a first column with an empty name: not a field."""
    pd.DataFrame({"instruction": ["A", "B"], "context": ["", "ctx"], "category": ["open_qa", "qa"]}).to_csv(tmp_path / "p.csv")
    df = sfio.read_instructions(tmp_path / "p.csv")
    assert list(df.columns) == ["id", "instruction", "input", "source"]
    assert df["input"].tolist() == ["", "ctx"] and df["source"].tolist() == ["open_qa", "qa"]
    write(tmp_path / "named.csv", ",instruction\nfirst,A\nsecond,B\n")       # not row numbers: kept
    assert "" in sfio.read_instructions(tmp_path / "named.csv").columns


def test_instructions_from_a_datasets_folder(tmp_path):
    datasets = pytest.importorskip("datasets", reason="the optional `datasets` extra is not installed")
    ds = datasets.Dataset.from_list([{"instruction": "A", "input": None}, {"instruction": "B", "input": "x"}])
    ds.save_to_disk(tmp_path / "ds")
    assert sfio.read_instructions(tmp_path / "ds")["instruction"].tolist() == ["A", "B"]


# ----------------------------------------------------------------------------- bad input: file, row, field

def test_missing_file():
    with pytest.raises(d.DataError, match=r"nope\.csv: file not found"):
        sfio.read_ratings("nope.csv")


def test_missing_column(tmp_path):
    p = write(tmp_path / "resp.csv", "instruction,input,answer\nA,,x\n")
    with pytest.raises(d.DataError) as e:
        sfio.read_responses(p)
    assert e.value.field == "response" and str(p) in str(e.value) and "the file has: instruction, input, answer" in str(e.value)


def test_malformed_row_too_many_fields(tmp_path):
    p = write(tmp_path / "k.csv", 'A,,x,y,(a)\nB,,x,y,(b),extra\n')
    with pytest.raises(d.DataError, match=r"k\.csv, row 2, field 'feedback': too many fields: 6, expected 5") as e:
        sfio.read_rankings(p)
    assert (e.value.row, e.value.field) == (2, "feedback")


def test_malformed_row_too_few_fields(tmp_path):
    p = write(tmp_path / "r.csv", 'A,,x,5\nB,,y,6\nC,,z\n')
    with pytest.raises(d.DataError) as e:
        sfio.read_ratings(p)
    assert (e.value.row, e.value.field) == (3, "score")


def test_non_utf8_file(tmp_path):
    p = write(tmp_path / "r.csv", "A,,caf\xe9,5\n", encoding="latin-1")
    with pytest.raises(d.DataError, match=r"r\.csv, row 1, field 'output': not valid UTF-8 \(byte 7\)"):
        sfio.read_ratings(p)


@pytest.mark.parametrize("score", ["0", "8", "5.5", "high", ""])
def test_score_outside_scale(tmp_path, score):
    p = write(tmp_path / "r.csv", f'A,,x,5\nB,,y,{score}\n')
    with pytest.raises(d.DataError) as e:
        sfio.read_ratings(p)
    assert (e.value.row, e.value.field) == (2, "score") and "1-7" in str(e.value)


def test_scores_written_as_floats_are_accepted(tmp_path):
    p = write(tmp_path / "r.csv", 'A,,x,5.0\n')
    assert sfio.read_ratings(p)["score"].tolist() == [5]


@pytest.mark.parametrize("label", ["(c)", "tie", "", "Output (a)"])
def test_unknown_feedback_label(tmp_path, label):
    p = write(tmp_path / "k.csv", f'A,,x,y,(a)\nB,,x,y,equal\nC,,x,y,{label}\n')
    with pytest.raises(d.DataError) as e:
        sfio.read_rankings(p)
    assert (e.value.row, e.value.field) == (3, "feedback") and str(p) in str(e.value)


def test_header_csv_given_to_headerless_reader(tmp_path):
    """A header row is recognised (it names 'instruction'), so the header CSV must carry a score."""
    p = write(tmp_path / "r.csv", "instruction,input,response\nA,,x\n")
    with pytest.raises(d.DataError, match="missing column") as e:
        sfio.read_ratings(p)
    assert e.value.field == "score"
    p = write(tmp_path / "r2.csv", "instruction,input,response,score\nA,,x,5\n")
    assert sfio.read_ratings(p)["score"].tolist() == [5]


def test_empty_instruction_and_empty_file(tmp_path):
    p = write(tmp_path / "r.csv", 'A,,x,5\n" ",,y,6\n')
    with pytest.raises(d.DataError) as e:
        sfio.read_ratings(p)
    assert (e.value.row, e.value.field) == (2, "instruction")
    with pytest.raises(d.DataError, match="file is empty"):
        sfio.read_ratings(write(tmp_path / "e.csv", ""))


@pytest.mark.parametrize("text,row,field,match", [
    ('{"instruction": "A"}', None, "response", "missing column"),
    ('{\n "instruction": "A"\n}', None, None, "found one JSON object"),
    ('{"instruction": "A", "responses": ["x"]}\n{"b": 2}', 2, "instruction", "line 2, field 'instruction': is missing"),
    ('{}', None, None, "empty JSON object"),
    ('[{"instruction": "A", "responses": ["x"]}, {"input": "y", "responses": []}]', 2, "instruction", "is missing"),
    ('[{"instruction": "A", "responses": ["x"]}, {"instruction": "y", "responses": []}]', 2, "responses", "no responses"),
    ('[{"instruction": "A", "responses": "x"}]', 1, "responses", "expected a list"),
    ('[{"instruction": 3, "responses": []}]', 1, "instruction", "expected text"),
    ('[{"instruction": "A", "responses": [1]}]', 1, "responses", "response 1 is int"),
    ('[{"instruction": "A",', 1, None, "malformed JSON"),
    ('["A"]', 1, None, "expected an object"),
])
def test_bad_generation_json(tmp_path, text, row, field, match):
    with pytest.raises(d.DataError, match=match) as e:
        sfio.read_responses(write(tmp_path / "g.json", text))
    assert (e.value.row, e.value.field) == (row, field)


def test_bad_jsonl_line_and_model_outputs(tmp_path):
    with pytest.raises(d.DataError) as e:
        sfio.read_instructions(write(tmp_path / "i.jsonl", '{"instruction": "A"}\n{oops}\n'))
    assert e.value.row == 2
    with pytest.raises(d.DataError) as e:
        sfio.read_model_outputs(write(tmp_path / "o.json", '[{"instruction": "A", "output": null}]'))[d.MODEL_OUTPUT_COLUMNS]
    assert (e.value.row, e.value.field) == (1, "output")
    # an empty output is allowed (evaluation reports it with counts), a missing one is not
    assert sfio.read_model_outputs(write(tmp_path / "o2.json", '[{"instruction": "A", "output": ""}]'))["output"].tolist() == [""]


def test_unsupported_extension(tmp_path):
    with pytest.raises(d.DataError, match="not a header"):
        sfio.read_instructions(write(tmp_path / "i.txt", "A"))


# ----------------------------------------------------------------------------- atomic writes

def test_atomic_write_leaves_old_file_on_crash(tmp_path):
    target = write(tmp_path / "t.jsonl", "old\n")
    with pytest.raises(RuntimeError):
        with d.atomic_path(target) as tmp:
            tmp.write_text("half-written")
            raise RuntimeError("crash")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.jsonl"]


def test_atomic_write_survives_sigkill(tmp_path):
    """A process killed mid-write leaves the previous complete file, never a truncated one."""
    target = tmp_path / "big.jsonl"
    sfio.write_table(pd.DataFrame({"x": [1]}), target)
    code = (
        "import os, signal, pandas as pd; from sflib.core import data as d\n"
        "df = pd.DataFrame({'x': range(200000)})\n"
        f"with d.atomic_path({str(target)!r}) as tmp:\n"
        "    df.to_json(tmp, orient='records', lines=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9
    assert sfio.read_table(target)["x"].tolist() == [1]


def test_written_files_are_readable_by_others(tmp_path):
    p = d.atomic_write_text(tmp_path / "x.txt", "hi")
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(p).st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's private 0600


# ----------------------------------------------------------------------------- CLI

def test_cli_convert_and_error_message(tmp_path):
    out = tmp_path / "r.parquet"
    res = subprocess.run([sys.executable, "-m", "sflib", "convert",
                          str(ORIG / "alpaca_generation/feedback_ratings_sample_generation.csv"), str(out),
                          "--from", "ratings"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert len(sfio.read_table(out)) == 99
    bad = write(tmp_path / "bad.csv", "A,,x,9\n")
    res = subprocess.run([sys.executable, "-m", "sflib", "convert", str(bad), str(out), "--from", "ratings"],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "row 1, field 'score'" in res.stderr and "Traceback" not in res.stderr
