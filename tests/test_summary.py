"""Tests of shapnas.experiments.summary: the paired bootstrap and the IAC records of ``summary --json``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shapnas.cli import main
from shapnas.experiments.summary import collect_summary, paired_bootstrap
from shapnas.runs.files import save_json


def _scores(values) -> dict[str, float]:
    return {f"p{i:03d}": float(v) for i, v in enumerate(values)}


def test_paired_bootstrap_shift_and_identity() -> None:
    base = _scores(np.linspace(0.5, 0.9, 30))
    same = paired_bootstrap(base, base)
    assert same == {"mean": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    shifted = paired_bootstrap({k: v + 0.03 for k, v in base.items()}, base)
    assert shifted["mean"] == pytest.approx(0.03)
    assert shifted["ci_low"] == pytest.approx(0.03) and shifted["ci_high"] == pytest.approx(0.03)


def test_paired_bootstrap_pairs_patients_not_means() -> None:
    rng = np.random.default_rng(1)
    base = rng.uniform(0.3, 0.9, 40)  # large between-patient spread
    better = base + rng.normal(0.02, 0.01, 40)  # a small but consistent per-patient gain
    result = paired_bootstrap(_scores(better), _scores(base))
    assert 0 < result["ci_low"] < result["mean"] < result["ci_high"]
    null = paired_bootstrap(_scores(base + rng.normal(0.0, 0.02, 40)), _scores(base))
    assert null["ci_low"] < 0 < null["ci_high"]


def test_paired_bootstrap_is_seeded_and_uses_common_patients() -> None:
    rng = np.random.default_rng(2)
    a, b = _scores(rng.uniform(0, 1, 20)), _scores(rng.uniform(0, 1, 20))
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    assert paired_bootstrap(a, b, seed=3) != paired_bootstrap(a, b, seed=4)
    partial = {k: v for k, v in list(b.items())[:5]}
    expected = np.mean([a[k] - partial[k] for k in partial])
    assert paired_bootstrap(a, partial)["mean"] == pytest.approx(expected)
    assert paired_bootstrap(a, {"other": 0.5}) is None
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap(a, b, level=1.0)


def _eval(run, target: str, dice: dict[str, float], backbone: str = "basic_unet", seed: int = 0) -> None:
    per_case = []
    for patient, value in dice.items():
        for frame in (1, 2):  # two cases per patient, as ACDC
            per_case.append({"case_id": f"{patient}_f{frame}", "patient_id": patient,
                             "regions": {"A": {"dice": value}, "B": {"dice": None}}})
    save_json(run / f"eval-{target}" / "metrics.json", {
        "dataset": "acdc", "backbone": backbone, "seed": seed, "target": target, "dice_mean": float(np.mean(
            list(dice.values()))), "dice_per_class": {"A": 0.0}, "hd95_mean": 1.0, "per_case": per_case})


def test_summary_json_carries_paired_comparisons(tmp_path, capsys) -> None:
    run = tmp_path / "acdc" / "basic_unet" / "seed-0"
    base = dict(zip([f"p{i}" for i in range(32)], np.linspace(0.6, 0.8, 32)))
    _eval(run, "backbone", base)
    _eval(run, "finetune", {k: v + 0.01 for k, v in base.items()})
    _eval(run, "shapley", {k: v + 0.02 for k, v in base.items()})
    records = {r["method"]: r for r in collect_summary(tmp_path)}
    iac = records["iac-shapley"]
    assert iac["test_patients"] == 32
    assert iac["dice_vs_backbone"]["mean"] == pytest.approx(0.02)
    assert iac["dice_vs_finetune"]["ci_low"] == pytest.approx(0.01)
    assert "dice_vs_backbone" not in records["backbone"]
    assert main(["summary", "--results", str(tmp_path), "--json"]) == 0
    printed = {r["method"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(printed["iac-shapley"]["dice_vs_finetune"]) == {"mean", "ci_low", "ci_high"}


def test_summary_without_baselines_says_none(tmp_path) -> None:
    run = tmp_path / "acdc" / "basic_unet" / "seed-0"
    _eval(run, "none", {"p0": 0.5, "p1": 0.7})
    (record,) = collect_summary(tmp_path)
    assert record["dice_vs_backbone"] is None and record["dice_vs_finetune"] is None
    assert record["test_patients"] == 2


def test_summary_model_dir_is_what_predict_takes(tmp_path, capsys) -> None:
    """Every ``summary --json`` record names the stage folder of its model; ``predict --run`` accepts it."""
    import torch

    from shapnas.data.layouts import dataset_spec, list_cases
    from shapnas.data.phantoms import write_phantom_dataset
    from shapnas.networks.backbones import build_backbone
    from shapnas.networks.checkpoints import save_model

    data = write_phantom_dataset("acdc", tmp_path / "data", 1, 0)
    spec, case = dataset_spec("acdc", data), list_cases("acdc", data)[0]
    run = tmp_path / "results" / "acdc" / "basic_unet" / "seed-0"
    torch.manual_seed(0)
    net, init_args = build_backbone("basic_unet", 1, 4, "tiny")
    for stage in ("pretrain", "finetune"):
        save_model(run / stage / "model.pt", kind="backbone", net=net, backbone_name="basic_unet",
                   init_args=init_args, spec=spec, slice_size=32, config={})
    _eval(run, "backbone", {"p0": 0.5})
    _eval(run, "finetune", {"p0": 0.6})
    _eval(run, "shapley", {"p0": 0.7})
    assert main(["summary", "--results", str(tmp_path / "results"), "--json"]) == 0
    records = {r["method"]: r for r in json.loads(capsys.readouterr().out)}
    assert {m: r["model_dir"] for m, r in records.items()} == {
        "backbone": str(run / "pretrain"), "finetune": str(run / "finetune"),
        "iac-shapley": str(run / "retrain-shapley")}
    for method in ("backbone", "finetune"):
        output = tmp_path / f"{method}.nii.gz"
        assert main(["predict", "--run", records[method]["model_dir"], "--input", str(case.image_paths[0]),
                     "--output", str(output), "--device", "cpu"]) == 0
        assert output.exists()
    assert main(["predict", "--run", records["iac-shapley"]["model_dir"], "--input", str(case.image_paths[0]),
                 "--output", str(tmp_path / "x.nii.gz"), "--device", "cpu"]) == 2  # no retrain model saved here
    assert "retrain-shapley" in capsys.readouterr().err


def _profiled(run, target: str, profile: str | None, seed: int = 0) -> None:
    _eval(run, target, {"p0": 0.5, "p1": 0.6})
    if profile:
        save_json(run / f"eval-{target}" / "config.json", {"profile": profile, "seed": seed})


def test_summary_never_mixes_profiles(tmp_path, capsys) -> None:
    from shapnas.runs.records import MixedProfilesError

    _profiled(tmp_path / "acdc" / "basic_unet" / "seed-0", "none", "smoke")
    _profiled(tmp_path / "acdc" / "basic_unet" / "seed-1", "none", "workshop")
    _profiled(tmp_path / "acdc" / "basic_unet" / "seed-2", "none", None)  # older results: no profile recorded
    with pytest.raises(MixedProfilesError, match=r"several profiles \(\(not recorded\), smoke, workshop\)"):
        collect_summary(tmp_path)
    (record,) = collect_summary(tmp_path, profile="workshop")
    assert record["profile"] == "workshop" and record["run_dir"].endswith("seed-1")
    assert main(["summary", "--results", str(tmp_path)]) == 2
    assert "--profile" in capsys.readouterr().err
    assert main(["summary", "--results", str(tmp_path), "--profile", "smoke", "--json"]) == 0
    assert [r["profile"] for r in json.loads(capsys.readouterr().out)] == ["smoke"]


def test_stability_records_never_mix_profiles(tmp_path, capsys) -> None:
    from shapnas.runs.records import MixedProfilesError, collect_stability_records

    for seed, profile in ((0, "smoke"), (1, "smoke"), (2, "workshop")):
        stage = tmp_path / "acdc" / "basic_unet" / f"seed-{seed}" / "search-none"
        save_json(stage / "metrics.json", {"dataset": "acdc", "backbone": "basic_unet", "policy": "none",
                                           "seed": seed, "genotype": [[0, 0, "skip_connect"]]})
        save_json(stage / "config.json", {"profile": profile, "decoder_input": seed == 2})
    with pytest.raises(MixedProfilesError, match="smoke, workshop"):
        collect_stability_records(tmp_path)
    smoke = collect_stability_records(tmp_path, profile="smoke")
    assert [(r["seed"], r["profile"], r["equivalent_inputs"]) for r in smoke] == [(0, "smoke", True),
                                                                                   (1, "smoke", True)]
    assert main(["stability", "--results", str(tmp_path), "--profile", "workshop", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["seeds"] == [2] and row["equivalent_inputs"] is False
    assert main(["stability", "--results", str(tmp_path)]) == 2


def test_interval_text_has_one_writer_and_no_negative_zero():
    from shapnas.experiments.intervals import dice_points, interval_bracket, interval_verdict

    interval = {"mean": -0.0004, "ci_low": -0.011, "ci_high": 0.026}
    assert interval_bracket(interval) == "+0.0 [-1.1, +2.6]"
    assert interval_bracket(interval, scale=1, digits=3) == "+0.000 [-0.011, +0.026]"
    assert interval_bracket(None, "") == "" and dice_points(None) == "–" and dice_points(0.8266) == "82.7"
    assert interval_verdict(interval) == "matches"
    assert interval_verdict({"mean": 0.02, "ci_low": 0.001, "ci_high": 0.03}) == "improves"


def test_pooled_table_marks_few_seeds_and_states_verdicts():
    from shapnas.experiments.intervals import pooled_table_lines

    better = {"mean": 0.02, "ci_low": 0.01, "ci_high": 0.03}
    unclear = {"mean": -0.004, "ci_low": -0.02, "ci_high": 0.01}
    rows = [{"method": "backbone", "seeds": [0, 1, 2], "dice_patient_mean": 0.8},
            {"method": "iac-shapley", "seeds": [0, 1], "dice_patient_mean": 0.82, "dice_vs_backbone": better,
             "dice_vs_finetune": unclear}]
    header, rule, backbone, cell = pooled_table_lines(rows, first="method", backbone_column="vs backbone")
    assert header == "| method | seeds | Dice | vs backbone | vs fine-tuned |" and rule.count("|") == 6
    assert backbone.endswith("| 3 | 80.0 | – | – |")
    assert "(fewer than 3 seeds) | 2 | 82.0 | +2.0 [+1.0, +3.0] (better) | -0.4 [-2.0, +1.0] (cannot tell) |" in cell


def test_pooled_groups_keep_settings_apart_and_arms_in_order():
    from shapnas.experiments.summary import pooled_groups

    def rec(method, setting="transfer", n=8):
        return {"dataset": "acdc", "backbone": "basic_unet", "setting": setting, "target_train_patients": n,
                "profile": "workshop", "method": method}

    groups = pooled_groups([rec("iac-shapley"), rec("finetune"), rec("backbone"), rec("iac-shapley", "same_site", None),
                            rec("scratch", n=4), rec("scratch", n=16)])
    assert [(g.setting, g.n) for g, _ in groups] == [("same_site", 0), ("transfer", 4), ("transfer", 8), ("transfer", 16)]
    assert [r["method"] for r in groups[2][1]] == ["backbone", "finetune", "iac-shapley"]


def test_iac_records_compare_with_the_other_backbone_families(tmp_path) -> None:
    from shapnas.experiments.summary import pooled_summary

    base = dict(zip([f"p{i}" for i in range(32)], np.linspace(0.6, 0.8, 32)))
    for seed in (0, 1, 2):
        run = tmp_path / "acdc" / "basic_unet" / f"seed-{seed}"
        _eval(run, "backbone", base, seed=seed)
        _eval(run, "shapley", {k: v + 0.02 for k, v in base.items()}, seed=seed)
        _eval(tmp_path / "acdc" / "attention_unet" / f"seed-{seed}", "backbone",
              {k: v + 0.03 for k, v in base.items()}, backbone="attention_unet", seed=seed)
    _eval(tmp_path / "acdc" / "basic_unet_plus_plus" / "seed-0", "backbone", base, backbone="basic_unet_plus_plus")
    records = [r for r in collect_summary(tmp_path) if r["method"] == "iac-shapley"]
    first = next(r for r in records if r["seed"] == 0)
    assert set(first["dice_vs_baselines"]) == {"attention_unet", "basic_unet_plus_plus"}
    assert first["dice_vs_baselines"]["attention_unet"]["mean"] == pytest.approx(-0.01)
    assert first["dice_vs_baselines"]["basic_unet_plus_plus"]["mean"] == pytest.approx(0.02)
    assert set(next(r for r in records if r["seed"] == 1)["dice_vs_baselines"]) == {"attention_unet"}
    assert "dice_vs_baselines" not in next(r for r in collect_summary(tmp_path) if r["method"] == "backbone")
    pooled = next(r for r in pooled_summary(collect_summary(tmp_path)) if r["method"] == "iac-shapley")
    assert pooled["dice_vs_baselines"]["attention_unet"]["mean"] == pytest.approx(-0.01)
    assert pooled["dice_vs_baselines"]["attention_unet"]["seeds"] == 3
    assert pooled["dice_vs_baselines"]["basic_unet_plus_plus"]["seeds"] == 1
