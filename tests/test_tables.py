"""The one reader per kind: formats sniffed from the content, common layouts mapped, odd but valid files
accepted, the catalog of vendored files, the CLI input helpers and `convert`."""
from __future__ import annotations

import argparse
import json
import math

import pandas as pd
import pytest

from sflib.core import catalog, data as d
from sflib.study import inventory
from sflib import cli
from sflib import io as sfio
from sflib.core.data import DataError

datasets = pytest.importorskip("datasets")


def write(path, text, encoding="utf-8"):
    path.write_text(text, encoding=encoding, newline="")
    return path


# ----------------------------------------------------------------------------- formats from the content

def test_datasets_to_json_writes_json_lines_into_a_json_file(tmp_path):
    ds = datasets.Dataset.from_dict({"instruction": ["A", "B"], "input": ["", "x"], "output": ["a", "b"]})
    ds.to_json(str(tmp_path / "x.json"))
    assert (tmp_path / "x.json").read_text().count("\n") == 2  # really JSON Lines
    df = sfio.read_responses(tmp_path / "x.json")
    assert df["response"].tolist() == ["a", "b"] and df["input"].tolist() == ["", "x"]
    assert df["instruction_id"].tolist() == [d.make_id("A"), d.make_id("B", "x")]


def test_saved_dataset_and_dataset_dict_folders(tmp_path):
    ds = datasets.Dataset.from_dict({"instruction": ["A", "B"], "input": ["", ""]})
    ds.save_to_disk(str(tmp_path / "plain"))
    assert sfio.read_instructions(tmp_path / "plain")["instruction"].tolist() == ["A", "B"]
    datasets.Dataset.from_dict({"instruction": ["A", "A"], "input": ["", None]}).save_to_disk(str(tmp_path / "dup"))
    dup = sfio.read_instructions(tmp_path / "dup")
    assert len(dup) == 1 and dup.attrs["duplicates_dropped"] == 1 and dup.attrs["format"] == "dataset"
    datasets.DatasetDict({"train": ds, "test": ds.select([1])}).save_to_disk(str(tmp_path / "dd"))
    assert sfio.read_instructions(tmp_path / "dd")["instruction"].tolist() == ["A", "B"]
    assert sfio.read_instructions(tmp_path / "dd", split="test")["instruction"].tolist() == ["B"]


def test_parquet_is_read_by_its_magic_bytes_whatever_the_suffix(tmp_path):
    df = pd.DataFrame({"instruction": ["A"], "output": ["x"], "generator": ["m"], "dataset": ["koala"]})
    df.to_parquet(tmp_path / "outputs.json")
    got = sfio.read_model_outputs(tmp_path / "outputs.json")
    assert got[d.MODEL_OUTPUT_COLUMNS].to_dict("records") == df.to_dict("records")


def test_same_records_in_every_format_give_the_same_table(tmp_path):
    recs = [{"instruction": "Say hi.", "input": "", "response": "hi", "score": 5},
            {"instruction": "Add.", "input": "2 2", "response": "4", "score": 7}]
    df = pd.DataFrame(recs)
    (tmp_path / "a.json").write_text(json.dumps(recs))
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    df.to_csv(tmp_path / "c.csv", index=False)
    df.to_parquet(tmp_path / "d.parquet")
    datasets.Dataset.from_pandas(df).save_to_disk(str(tmp_path / "e"))
    write(tmp_path / "f.txt", "Say hi.,,hi,5\nAdd.,2 2,4,7\n")  # the original headerless layout
    names = ("a.json", "b.jsonl", "c.csv", "d.parquet", "e", "f.txt")
    tables = [sfio.read_ratings(tmp_path / n)[d.RATING_COLUMNS] for n in names]
    for t in tables[1:]:
        pd.testing.assert_frame_equal(t, tables[0])
    assert tables[0]["score"].tolist() == [5, 7]


# ----------------------------------------------------------------------------- odd but valid

def test_bom_crlf_extra_columns_and_missing_input(tmp_path):
    p = tmp_path / "r.csv"
    p.write_bytes("\ufeffinstruction,response,score,notes\r\nSay hi.,hi,5,first\r\n\"Two\r\nlines\",ok,6,\r\n".encode())
    df = sfio.read_ratings(p)
    assert df["input"].tolist() == ["", ""] and df["score"].tolist() == [5, 6]
    assert df["notes"].tolist() == ["first", ""]  # an extra column is kept, never dropped
    assert df["instruction"].tolist()[1] == "Two\nlines"
    assert df["instruction_id"].tolist()[1] == d.make_id("Two\r\nlines")


@pytest.mark.parametrize("value", [None, float("nan"), "nan", "  "])
def test_missing_input_forms(tmp_path, value):
    p = tmp_path / "i.parquet"
    pd.DataFrame({"instruction": ["A"], "input": [value]}).to_parquet(p)
    assert sfio.read_instructions(p)["input"].tolist() == [""]
    (tmp_path / "i.json").write_text(json.dumps([{"instruction": "A", "input": None}]))
    assert sfio.read_instructions(tmp_path / "i.json")["id"].tolist() == [d.make_id("A")]


def test_one_object_per_line_file_with_a_single_record(tmp_path):
    write(tmp_path / "one.json", '{"instruction": "A", "output": "x"}\n')
    assert sfio.read_model_outputs(tmp_path / "one.json")["output"].tolist() == ["x"]


def test_stored_invalid_answers_keep_a_missing_score_or_decision(tmp_path):
    pd.DataFrame({"instruction": ["A", "B"], "response": ["x", "y"], "score": [5, None],
                  "valid": [True, False]}).to_parquet(tmp_path / "r.parquet")
    scores = sfio.read_ratings(tmp_path / "r.parquet")["score"].tolist()
    assert scores[0] == 5 and math.isnan(scores[1])
    pd.DataFrame({"instruction": ["A", "B"], "response1": ["x", "y"], "response2": ["z", "w"],
                  "decision": ["a", None], "valid": [True, False]}).to_json(tmp_path / "k.jsonl", orient="records", lines=True)
    decisions = sfio.read_rankings(tmp_path / "k.jsonl")["decision"].tolist()
    assert decisions[0] == "a" and pd.isna(decisions[1])


# ----------------------------------------------------------------------------- layouts

def test_dolly_context_becomes_input_and_category_source(tmp_path):
    recs = [{"instruction": "Summarise the paragraph.", "context": "Cats sleep a lot.", "response": "Cats nap.",
             "category": "summarization"}]
    (tmp_path / "dolly.jsonl").write_text(json.dumps(recs[0]) + "\n")
    ins = sfio.read_instructions(tmp_path / "dolly.jsonl")
    assert ins[["instruction", "input", "source"]].to_dict("records") == [
        {"instruction": "Summarise the paragraph.", "input": "Cats sleep a lot.", "source": "summarization"}]
    assert ins["response"].tolist() == ["Cats nap."]  # kept, not dropped
    assert ins["id"].tolist() == [d.make_id("Summarise the paragraph.", "Cats sleep a lot.")]
    resp = sfio.read_responses(tmp_path / "dolly.jsonl")
    assert resp[["input", "response", "source"]].values.tolist() == [["Cats sleep a lot.", "Cats nap.", "summarization"]]


def test_task_content_without_a_place_is_refused_not_dropped(tmp_path):
    (tmp_path / "q.json").write_text(json.dumps([{"instruction": "Answer from the passage.", "passage": "Cats nap."}]))
    with pytest.raises(DataError) as e:
        sfio.read_instructions(tmp_path / "q.json")
    assert e.value.field == "passage" and "merge it into 'input'" in str(e.value)
    (tmp_path / "s.json").write_text(json.dumps([{"instruction": "A", "system": ""}]))
    assert sfio.read_instructions(tmp_path / "s.json")["instruction"].tolist() == ["A"]  # an empty one is harmless


def test_alpaca_parquet_with_output_reads_as_responses_and_pairs(tmp_path):
    pd.DataFrame({"instruction": ["A", "A", "A", "B"], "input": ["", "", "", ""],
                  "output": ["x", "y", "z", "w"]}).to_parquet(tmp_path / "alpaca.parquet")
    responses = sfio.read_responses(tmp_path / "alpaca.parquet")
    assert responses["response"].tolist() == ["x", "y", "z", "w"]
    assert responses.attrs["renamed"] == {"response": "output"} and responses.attrs["format"] == "parquet"
    pairs = sfio.read_pairs(tmp_path / "alpaca.parquet")
    assert len(pairs) == 3 and set(pairs["instruction"]) == {"A"}  # B has one response: no pair


def test_alpaca_eval_annotations(tmp_path):
    recs = [{"instruction": "Q1", "output_1": "ref", "output_2": "pol", "generator_1": "davinci", "generator_2": "mine",
             "annotator": "gpt4", "preference": 2, "dataset": "koala"},
            {"instruction": "Q2", "output_1": "r", "output_2": "p", "generator_1": "davinci", "generator_2": "mine",
             "annotator": "gpt4", "preference": 1.0},
            {"instruction": "Q3", "output_1": "r", "output_2": "p", "preference": 1.5},
            {"instruction": "Q4", "output_1": "r", "output_2": "p", "preference": 1.73},
            {"instruction": "Q5", "output_1": "r", "output_2": "p", "preference": None}]
    (tmp_path / "annotations.json").write_text(json.dumps(recs, indent=2))
    df = sfio.read_annotations(tmp_path / "annotations.json")
    assert df["decision"].tolist()[:4] == ["b", "a", "equal", "b"] and pd.isna(df["decision"].iloc[4])
    assert df["valid"].tolist() == [True, True, True, True, False]
    row = df.iloc[0]
    assert (row.response1, row.response2, row.reference, row.policy, row.judge, row.dataset) == (
        "ref", "pol", "davinci", "mine", "gpt4", "koala")
    assert row.response_id_2 == d.make_response_id(d.make_id("Q1"), "pol")
    assert df["preference"].tolist()[3] == 1.73


def test_header_names_in_another_case(tmp_path):
    df = sfio.read_ratings(write(tmp_path / "r.csv", "Instruction,Input,Output,Score\nA,,x,5\n"))
    assert df[["instruction", "response", "score"]].values.tolist() == [["A", "x", 5]]
    with pytest.raises(DataError) as e:
        sfio.read_ratings(write(tmp_path / "s.csv", "Instruction,Input,Output,Score\nA,,x,9\n"))
    assert e.value.field == "Score"  # named as the file names it


def test_a_csv_whose_first_field_starts_with_a_bracket(tmp_path):
    df = sfio.read_ratings(write(tmp_path / "r.csv", '[Q] Add two and two.,,4,7\n{x} y,,z,1\n'))
    assert df["instruction"].tolist() == ["[Q] Add two and two.", "{x} y"] and df["score"].tolist() == [7, 1]


def test_an_empty_response_is_kept_but_a_short_row_is_refused(tmp_path):
    df = sfio.read_ratings(write(tmp_path / "r.csv", "A,,,1\nB,,x,5\n"))
    assert df["response"].tolist() == ["", "x"]
    with pytest.raises(DataError) as e:
        sfio.read_ratings(write(tmp_path / "s.csv", "A,,1\nB,,x,5\n"))
    assert (e.value.row, e.value.field) == (1, "score") and "too few fields: 3, expected 4" in str(e.value)


def test_headerless_quote_error_uses_row_and_field_wording(tmp_path):
    p = write(tmp_path / "r.csv", 'A,,x,5\nB,"unclosed,y,6\n')
    with pytest.raises(DataError) as e:
        sfio.read_ratings(p)
    assert (e.value.row, e.value.field) == (2, "input")
    assert str(e.value).startswith(f"{p}, row 2, field 'input': malformed CSV: a quoted field is never closed")


# ----------------------------------------------------------------------------- writing

@pytest.mark.parametrize("ext", [".jsonl", ".parquet", ".json", ".csv"])
def test_write_table_round_trips(tmp_path, ext):
    df = sfio.read_ratings(write(tmp_path / "r.csv", "A,,x,5\nB,in,y,6\n"))
    path = sfio.write_table(df, tmp_path / f"t{ext}")
    back = sfio.read_ratings(path)
    pd.testing.assert_frame_equal(back[d.RATING_COLUMNS], df[d.RATING_COLUMNS], check_dtype=False)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ----------------------------------------------------------------------------- CLI helpers and convert

def test_add_input_options_and_read_input(tmp_path):
    ds = datasets.Dataset.from_dict({"instruction": ["A", "A"], "input": ["", ""], "output": ["x", "y"]})
    datasets.DatasetDict({"validation": ds}).save_to_disk(str(tmp_path / "dd"))
    parser = argparse.ArgumentParser()
    sfio.add_input_options(parser, help="responses to rate")
    args = parser.parse_args(["--input", str(tmp_path / "dd"), "--split", "validation"])
    assert sfio.read_input(args, "responses")["response"].tolist() == ["x", "y"]
    assert len(sfio.read_input(args, "pairs")) == 1
    with pytest.raises(DataError, match="choose one with --split"):
        sfio.read_input(parser.parse_args(["--input", str(tmp_path / "dd")]), "responses")
    with pytest.raises(ValueError, match="unknown kind"):
        sfio.read_input(args, "scores")


def test_convert_model_outputs_from_parquet_and_a_dataset_folder(tmp_path, capsys):
    df = pd.DataFrame({"instruction": ["A", "B"], "output": ["x", "y"], "generator": ["m", "m"], "dataset": ["k", "k"]})
    df.to_parquet(tmp_path / "x.parquet")
    out = tmp_path / "o.json"
    assert cli.main(["convert", str(tmp_path / "x.parquet"), str(out), "--from", "model_outputs", "--to", "model_outputs"]) == 0
    assert json.loads(out.read_text()) == df.to_dict("records")
    datasets.DatasetDict({"eval": datasets.Dataset.from_pandas(df)}).save_to_disk(str(tmp_path / "dd"))
    assert cli.main(["convert", str(tmp_path / "dd"), str(tmp_path / "o.jsonl"), "--from", "model_outputs",
                     "--split", "eval"]) == 0
    assert sfio.read_model_outputs(tmp_path / "o.jsonl")["output"].tolist() == ["x", "y"]
    capsys.readouterr()
    assert cli.main(["convert", str(tmp_path / "dd"), str(tmp_path / "o2.jsonl"), "--from", "model_outputs"]) == 1
    assert "has no 'train' split; choose one with --split (splits: eval)" in capsys.readouterr().err


def test_convert_docstring_documents_from_not_layout():
    from sflib.io import convert_original as convert

    assert "--from" in convert.__doc__ and "--layout" not in convert.__doc__


# ----------------------------------------------------------------------------- catalog

def test_catalog_roles_point_at_existing_files_read_by_their_kind():
    for role in catalog.ROLES:
        assert catalog.path(role, original=True).exists()
        assert catalog.path(role).exists()
    assert catalog.path("feedback.ratings").name == "sample_ratings.jsonl"
    assert catalog.path("feedback.ratings", original=True).name == "feedback_ratings_sample_generation.csv"
    assert catalog.path("feedback.rating_requests").suffix == ".csv"  # no canonical table: the original
    assert len(sfio.read_role("feedback.ratings")) == 99 and len(sfio.read_role("feedback.ratings", original=True)) == 99
    assert len(sfio.read_role("eval.reference_outputs")) == 805
    assert set(catalog.BY_TABLE) == {p.stem for p in catalog.canonical_dir().glob("*.jsonl")}
    assert list(catalog.table()["role"]) == list(catalog.ROLES)
    with pytest.raises(KeyError, match="unknown data role"):
        catalog.path("feedback.scores")


def test_inventory_reads_the_catalogs_canonical_path(monkeypatch, tmp_path):
    assert catalog.canonical_path("sample_ratings") == catalog.path("feedback.ratings")
    monkeypatch.setenv("SFLIB_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="convert-original"):
        inventory.load_canonical("sample_ratings")
