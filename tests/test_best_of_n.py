"""Best-of-n: selection, best-of-m against brute force, bad input, prompt-format checks, AlpacaEval output."""
import itertools
import json

import numpy as np
import pandas as pd
import pytest

from sflib import bon as bon
from sflib.core import data as d
from sflib import io as sfio
from sflib.cli import build_parser, main


def scored(rewards: dict[str, list[float]], texts=None) -> pd.DataFrame:
    """A scored responses table: instruction i has len(rewards[i]) samples."""
    rows = []
    for name, rs in rewards.items():
        iid = d.make_id(name)
        for s, r in enumerate(rs):
            text = texts[name][s] if texts else f"{name} response {s} " + "word " * s
            rows.append({"instruction_id": iid, "sample": s, "instruction": name, "input": "", "response": text,
                         "reward": r, "source": f"ds-{name}", "generator": "policy"})
    return pd.DataFrame(rows)


def test_select_best_is_the_argmax_with_ties_to_the_first_sample():
    df = scored({"A": [0.1, 0.9, 0.3], "B": [0.5, 0.2, 0.5], "C": [-1.0, -2.0, -0.5]})
    best = bon.select_best(df.sample(frac=1, random_state=0))  # row order must not matter
    picked = dict(zip(best["instruction"], best["sample"]))
    assert picked == {"A": 1, "B": 0, "C": 2}
    assert (best["n_samples"] == 3).all()
    # n=2 looks only at the first two samples of each instruction
    with pytest.warns(UserWarning, match="3 samples beyond the first n=2"):
        picked2 = dict(zip(*bon.select_best(df, n=2)[["instruction", "sample"]].T.values))
    assert picked2 == {"A": 1, "B": 0, "C": 0}


def test_fewer_than_n_samples_is_an_error_or_a_counted_warning():
    df = scored({"A": [0.1, 0.2, 0.3, 0.4], "B": [0.5, 0.1], "C": [0.0, 0.2, 0.1]})
    with pytest.raises(ValueError, match=r"2 of 3 instructions have fewer than n=4 samples \(as few as 2"):
        bon.select_best(df, n=4)
    with pytest.warns(UserWarning, match=r"2 of 3 instructions have fewer than n=4"):
        best = bon.select_best(df, n=4, allow_fewer=True)
    assert dict(zip(best["instruction"], best["n_samples"])) == {"A": 4, "B": 2, "C": 3}
    assert dict(zip(best["instruction"], best["sample"])) == {"A": 3, "B": 0, "C": 1}
    with pytest.raises(ValueError, match="fewer than n=4"):  # n=None: the largest count is the n
        bon.best_of_m_selections(df)


def test_missing_rewards_and_repeated_samples_are_errors():
    df = scored({"A": [0.1, np.nan]})
    with pytest.raises(ValueError, match="1 of 2 responses have no reward"):
        bon.select_best(df)
    with pytest.raises(d.DataError, match="no 'reward' column"):
        bon.select_best(df.drop(columns="reward"))
    twice = pd.concat([scored({"A": [0.1, 0.2]}), scored({"A": [0.1, 0.2]})])
    with pytest.raises(d.DataError, match="repeat an"):
        bon.select_best(twice)


def test_empty_outputs_are_counted_and_kept():
    df = scored({"A": [0.9, 0.1], "B": [0.2, 0.3]}, texts={"A": ["", "text"], "B": [" ", "more text"]})
    with pytest.warns(UserWarning) as caught:
        best = bon.select_best(df)
    messages = [str(w.message) for w in caught]
    assert any("2 of 4 samples are empty responses (in 2 of 2 instructions)" in m for m in messages)
    assert any("1 of 2 selected responses are empty" in m for m in messages)
    assert len(best) == 2 and best.loc[best["instruction"] == "A", "response"].item() == ""


def test_expected_best_of_m_matches_brute_force():
    rng = np.random.default_rng(1)
    r = rng.normal(size=7)
    r[3] = r[5]  # a tie
    for m in range(1, 8):
        brute = np.mean([max(r[list(c)]) for c in itertools.combinations(range(7), m)])
        assert bon.expected_best_of_m(r, m) == pytest.approx(brute)
    with pytest.raises(ValueError):
        bon.expected_best_of_m(r, 8)


def test_best_of_m_curve_matches_brute_force_selection():
    rng = np.random.default_rng(0)
    rewards = {f"i{j}": rng.normal(size=8).round(1) for j in range(25)}  # rounding makes ties
    curve = bon.best_of_m_curve(rewards, seed=3)
    assert curve["m"].tolist() == [1, 2, 4, 8] and (curve["n_instructions"] == 25).all()
    for row in curve.itertuples():
        picks = []
        for iid, r in rewards.items():
            subset = bon.subset_order(iid, 8, seed=3)[:row.m]
            best = max(r[subset])
            first = min(s for s in subset if r[s] == best)  # ties: the earliest sample
            picks.append(r[first])
        assert row.selected == pytest.approx(np.mean(picks))
        assert row.expected == pytest.approx(np.mean([bon.expected_best_of_m(r, row.m) for r in rewards.values()]))
    assert curve["selected"].iloc[-1] == pytest.approx(np.mean([r.max() for r in rewards.values()]))
    assert curve["expected"].iloc[0] == pytest.approx(np.mean([r.mean() for r in rewards.values()]))
    assert curve["expected"].is_monotonic_increasing and curve["selected"].is_monotonic_increasing  # nested subsets
    # same rewards as a 2-D array and as a frame give the same expectation; another seed other subsets
    arr = np.stack(list(rewards.values()))
    assert np.allclose(bon.best_of_m_curve(arr)["expected"], curve["expected"])
    other = bon.best_of_m_curve(rewards, seed=4)
    assert not np.allclose(other["selected"].iloc[1:3], curve["selected"].iloc[1:3])


def test_selections_agree_with_curve_and_do_not_depend_on_other_instructions():
    rng = np.random.default_rng(2)
    df = scored({f"q{j}": list(rng.normal(size=4)) for j in range(10)})
    sel = bon.best_of_m_selections(df, seed=0)
    assert sel.groupby("m").size().to_dict() == {1: 10, 2: 10, 4: 10}
    curve = bon.best_of_m_curve(df, seed=0)
    assert np.allclose(sel.groupby("m")["reward"].mean().to_numpy(), curve["selected"].to_numpy())
    # best-of-n equals select_best
    assert sel[sel["m"] == 4]["sample"].tolist() == bon.select_best(df)["sample"].tolist()
    part = bon.best_of_m_selections(df[df["instruction"].isin(["q3", "q7"])], seed=0)
    merged = part.merge(sel, on=["m", "instruction_id"])
    assert len(merged) == 6 and (merged["sample_x"] == merged["sample_y"]).all()


def test_agreement_between_reward_models_and_length_by_m():
    rng = np.random.default_rng(5)
    a = scored({f"q{j}": list(rng.normal(size=4)) for j in range(12)})
    b = a.assign(reward=-a["reward"])
    sel_a, sel_b = bon.best_of_m_selections(a), bon.best_of_m_selections(b)
    same = bon.agreement(sel_a, sel_a)
    assert (same["same_sample"] == 1).all()
    opposite = bon.agreement(sel_a, sel_b).set_index("m")
    assert opposite.loc[1, "same_sample"] == 1  # one candidate: both must pick it
    assert opposite.loc[2, "same_sample"] == 0 and opposite.loc[4, "same_sample"] == 0
    assert opposite.loc[4, "chance"] == 0.25
    lengths = bon.length_by_m(a, {"a": sel_a, "b": sel_b})
    allrow = lengths[(lengths["selector"] == "all samples") & (lengths["m"] == 4)].iloc[0]
    assert allrow["mean_words"] == pytest.approx(a["response"].map(bon.words).mean())
    got = lengths[(lengths["selector"] == "a") & (lengths["m"] == 4)]["mean_words"].item()
    assert got == pytest.approx(sel_a[sel_a["m"] == 4]["response"].map(bon.words).mean())


def test_alpacaeval_layout_round_trip(tmp_path):
    df = scored({"A": [0.1, 0.9], "B": [0.3, 0.2]})
    best = bon.select_best(df)
    path = d.write_model_outputs(bon.to_model_outputs(best, "policy_bo2_ratings"), tmp_path / "out.json")
    raw = json.loads(path.read_text())
    assert [set(r) for r in raw] == [{"instruction", "output", "generator", "dataset"}] * 2
    back = sfio.read_model_outputs(path)[d.MODEL_OUTPUT_COLUMNS]
    assert back["output"].tolist() == best["response"].tolist()
    assert back["dataset"].tolist() == ["ds-A", "ds-B"] and (back["generator"] == "policy_bo2_ratings").all()
    with_input = best.assign(input=["ctx", ""])
    with pytest.warns(UserWarning, match="1 of 2 instructions have an input"):
        out = bon.to_model_outputs(with_input, "g")
    assert out["instruction"].tolist() == ["A\n\nctx", "B"]
    with pytest.raises(ValueError, match="several m"):
        bon.to_model_outputs(bon.best_of_m_selections(df), "g")


def test_prompt_format_mismatch_is_refused(tiny_rm_folder, tmp_path):
    from sflib.rm import RewardModel, RewardModelError

    assert bon.check_prompt_format(tiny_rm_folder)["kind"] == "ratings"
    other = tmp_path / "other"
    other.mkdir()
    meta = json.loads((tiny_rm_folder / "reward_model.json").read_text())
    (other / "reward_model.json").write_text(json.dumps({**meta, "prompt_format": "vicuna-v0"}))
    with pytest.raises(RewardModelError, match="format 'vicuna-v0'.*'alpaca-v1'"):
        bon.load_reward_model(other)  # refused before any weights are read (there are none here)
    (other / "reward_model.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "prompt_format"}))
    with pytest.raises(RewardModelError, match="format None"):
        bon.check_prompt_format(other)
    with pytest.raises(RewardModelError, match="no reward_model.json"):
        bon.check_prompt_format(tmp_path)
    rm = RewardModel.load(tiny_rm_folder)
    rm.meta["prompt_format"] = "chatml-v2"
    with pytest.raises(RewardModelError, match="chatml-v2"):
        bon.score_samples(scored({"A": [0.0]}), rm)


def test_score_select_and_cli_end_to_end(tiny_rm_folder, tmp_path):
    samples = scored({"Name a fruit.": [0, 0, 0], "Name a car.": [0, 0, 0]}).drop(columns="reward")
    s = bon.score_samples(samples, bon.load_reward_model(tiny_rm_folder), progress=False)
    assert s["reward"].notna().all() and s["reward"].nunique() > 1
    sfio.write_table(samples, tmp_path / "samples.jsonl")
    code = main(["best-of-n", "--responses", str(tmp_path / "samples.jsonl"), "--rm", f"ratings_rm={tiny_rm_folder}",
                 "--n", "3", "--out-dir", str(tmp_path / "bon")])
    assert code == 0
    out = sfio.read_model_outputs(tmp_path / "bon" / "ratings_rm_outputs.json")[d.MODEL_OUTPUT_COLUMNS]
    expected = bon.select_best(s)["response"].tolist()
    assert out["output"].tolist() == expected and (out["generator"] == "policy_best_of_3_ratings_rm").all()
    curve = sfio.read_table(tmp_path / "bon" / "ratings_rm_best_of_m.jsonl")
    assert curve["m"].tolist() == [1, 2, 3]
    assert main(["best-of-n", "--responses", str(tmp_path / "samples.jsonl"), "--rm", str(tiny_rm_folder),
                 "--n", "4", "--out-dir", str(tmp_path / "bon2")]) == 1  # fewer than n: a clear error, exit 1


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["best-of-n", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "--allow-fewer" in text and "--rm" in text and "AlpacaEval" in text
