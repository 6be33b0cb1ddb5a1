"""The transfer setting end to end: the source backbone shared by every N, the arms in their own folder, records
that say which setting they come from, and intervals that carry the seeds' variance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shapnas.config.names import TRANSFER_ARMS, method_label, policy_of_method
from shapnas.config.stage_configs import RetrainConfig, config_from_profile
from shapnas.experiments.summary import collect_summary, paired_bootstrap, pooled_summary, two_level_bootstrap
from shapnas.runs.files import load_json
from shapnas.runs.identity import (
    TARGET_FIELDS,
    StageKey,
    model_stage_name,
    parse_stage_name,
    stage_fields,
    stage_key,
    stage_name,
)


def _cfg(root, **changes) -> RetrainConfig:
    return config_from_profile(RetrainConfig, "smoke", results_root=str(root), device="cpu", **changes)


def test_transfer_stages_sit_in_their_setting_folder_but_the_source_pretrain(tmp_path):
    cfg = _cfg(tmp_path, setting="transfer", target_train_patients=4, policy="shapley", joint_finetune=True)
    seed = tmp_path / "acdc" / "basic_unet" / "seed-0"
    assert stage_key(cfg, "pretrain").path(tmp_path) == seed / "pretrain"
    assert stage_key(cfg, "search").path(tmp_path) == seed / "transfer-n4" / "search-shapley"
    assert stage_key(cfg, "retrain").path(tmp_path) == seed / "transfer-n4" / "retrain-shapley-joint"
    assert stage_key(cfg.replace(joint_finetune=False), "retrain").name == "retrain-shapley"
    for name in ("normtune", "scratch", "eval-normtune", "eval-scratch", "eval-shapley-joint", "retrain-none-joint"):
        kind, variant = parse_stage_name(name)
        key = StageKey("kits", "unet", 1, kind, variant, "transfer-n16")
        assert key.name == name and StageKey.from_path(key.path(tmp_path)) == key
    for bad in ("search-shapley-joint", "eval-shapley-jointly", "retrain-joint"):
        with pytest.raises(ValueError):
            parse_stage_name(bad)
    with pytest.raises(ValueError, match="setting folder"):
        StageKey("acdc", "unet", 0, "finetune", "", "transfer-nX")
    assert [model_stage_name(m) for m in ("normtune", "scratch", "iac-shapley-joint")] == [
        "normtune", "scratch", "retrain-shapley-joint"]
    assert policy_of_method("iac-none-joint") == "none-joint"
    assert method_label("iac-shapley-joint") == "IAC, Shapley-pruned + joint fine-tune"
    assert stage_name("eval", "shapley-joint") == "eval-shapley-joint"


def test_same_site_stages_never_compare_the_transfer_fields(tmp_path):
    cfg = _cfg(tmp_path, setting="transfer")
    source = stage_fields(stage_key(cfg, "pretrain"), cfg)
    assert not set(source) & set(TARGET_FIELDS)
    assert set(TARGET_FIELDS) <= set(stage_fields(stage_key(cfg, "finetune"), cfg))
    scratch = stage_fields(stage_key(cfg, "scratch"), cfg)
    assert "pretrain_steps" in scratch and "finetune_lr" not in scratch and "normtune_lrs" not in scratch
    assert "normtune_lrs" in stage_fields(stage_key(cfg, "normtune"), cfg)
    assert cfg.source_site().setting == "same_site" and cfg.source_site().target_data_dir == ""
    with pytest.raises(ValueError, match="normtune_lrs"):
        cfg.replace(normtune_lrs=(0.0,))


def test_two_level_bootstrap_is_the_patient_bootstrap_for_one_seed_and_widens_with_seed_spread():
    rng = np.random.default_rng(3)
    one = {f"p{i}": float(d) for i, d in enumerate(rng.normal(0.01, 0.02, 30))}
    single = two_level_bootstrap({0: one})
    assert {k: single[k] for k in ("mean", "ci_low", "ci_high")} == paired_bootstrap(one, dict.fromkeys(one, 0.0))
    assert single["seeds"] == 1 and single["patients"] == 30
    # three seeds with the same patient spread, whose means differ by 2 points: the interval grows
    spread = {s: {p: d + 0.02 * (s - 1) for p, d in one.items()} for s in range(3)}
    same = {s: dict(one) for s in range(3)}
    wide, narrow = two_level_bootstrap(spread), two_level_bootstrap(same)
    assert wide["mean"] == pytest.approx(narrow["mean"]) == pytest.approx(single["mean"])
    assert wide["ci_high"] - wide["ci_low"] > 1.5 * (narrow["ci_high"] - narrow["ci_low"])
    assert narrow["ci_low"] <= narrow["mean"] <= narrow["ci_high"]
    assert two_level_bootstrap({}) is None
    with pytest.raises(ValueError):
        two_level_bootstrap({0: one}, level=1.0)


def test_the_arms_of_the_transfer_setting_run_and_pool_over_seeds(tmp_path, capsys):
    from shapnas.experiments.transfer import format_transfer_table, run_transfer

    cfg = _cfg(tmp_path, setting="transfer", target_train_patients=4, target_patients=34,
               normtune_lrs=(1e-2,), finetune_lrs=(3e-4,))
    arms = ("backbone", "finetune", "normtune", "scratch", "shapley", "shapley-joint")
    lines: list[str] = []
    pooled = run_transfer(cfg, [0, 1], arms, report=lines.append)
    assert len(lines) == 2 * (len(arms) + 1)
    seed = tmp_path / "acdc" / "basic_unet" / "seed-0"
    assert (seed / "pretrain" / "model.pt").is_file() and not (seed / "transfer-n4" / "pretrain").exists()
    assert load_json(seed / "pretrain" / "config.json")["setting"] == "same_site"
    normtune = load_json(seed / "transfer-n4" / "normtune" / "metrics.json")
    assert normtune["setting"] == "transfer" and normtune["target_train_patients"] == 4
    assert 0 < normtune["num_trainable_parameters"] < normtune["num_parameters"] / 50
    assert load_json(seed / "transfer-n4" / "retrain-shapley-joint" / "metrics.json")["joint_finetune"] is True

    records = collect_summary(tmp_path, setting="transfer-n4")
    assert {r["method"] for r in records} == {"backbone", "finetune", "normtune", "scratch", "iac-shapley",
                                              "iac-shapley-joint"}
    for record in records:
        assert record["setting"] == "transfer" and record["target_train_patients"] == 4 and record["seeds"] == 1
        assert record["test_patients"] == 30 and len(record["patient_dice"]) == 30
        assert record["source_drop"] is not None
    backbone = next(r for r in records if r["method"] == "backbone" and r["seed"] == 0)
    assert backbone["model_dir"] == str(seed / "pretrain")
    assert [r["method"] for r in collect_summary(tmp_path)] == ["backbone", "backbone"]  # the source evaluations
    assert {r["setting"] for r in collect_summary(tmp_path, setting=None)} == {"same_site", "transfer"}

    by_method = {r["method"]: r for r in pooled}
    assert set(by_method) == {r["method"] for r in records}
    for method in ("iac-shapley", "iac-shapley-joint", "normtune", "scratch"):
        vs = by_method[method]["dice_vs_finetune"]
        assert vs["seeds"] == 2 and vs["patients"] == 30 and vs["ci_low"] <= vs["mean"] <= vs["ci_high"]
    assert "dice_vs_finetune" not in by_method["finetune"] and by_method["finetune"]["dice_vs_backbone"]["seeds"] == 2
    assert "dice_vs_backbone" not in by_method["backbone"]
    assert by_method["backbone"]["seeds"] == [0, 1] and by_method["backbone"]["source_drop"] is not None
    table = format_transfer_table(pooled)
    assert "N = 4 labelled target patients" in table and "IAC, Shapley-pruned + joint fine-tune" in table
    assert pooled_summary([]) == [] and set(TRANSFER_ARMS) >= set(arms)

    from shapnas.cli import main

    capsys.readouterr()
    assert main(["summary", "--results", str(tmp_path), "--setting", "transfer-n4", "--pooled"]) == 0
    assert "acdc basic_unet: transfer, N = 4 labelled target patients" in capsys.readouterr().out
    assert main(["summary", "--results", str(tmp_path), "--setting", "all", "--json"]) == 0
    assert {r["setting"] for r in json.loads(capsys.readouterr().out)} == {"same_site", "transfer"}

    from shapnas.runs.records import collect_stability_records

    searches = collect_stability_records(tmp_path, setting="transfer-n4")
    assert [(r["policy"], r["seed"], r["setting"], r["target_train_patients"]) for r in searches] == [
        ("shapley", 0, "transfer", 4), ("shapley", 1, "transfer", 4)]
    assert collect_stability_records(tmp_path) == []  # the same-site readers never see the transfer searches
    assert main(["stability", "--results", str(tmp_path), "--setting", "transfer-n4"]) == 0
    assert "acdc     basic_unet   4 shapley      2" in capsys.readouterr().out
    assert main(["stability", "--results", str(tmp_path), "--setting", "transfer-4"]) == 2


def test_the_transfer_chapter_reads_verdicts_from_the_intervals(tmp_path):
    from shapnas.book.transfer_section import transfer_markdown, verdict, write_transfer_section

    assert [verdict(v) for v in ({"ci_low": 0.01, "ci_high": 0.03}, {"ci_low": -0.03, "ci_high": -0.01},
                                 {"ci_low": -0.01, "ci_high": 0.02}, None)] == ["better", "worse", "cannot tell", "–"]
    base = {"dataset": "kits", "backbone": "basic_unet", "setting": "transfer", "target_train_patients": 4,
            "profile": "workshop", "seeds": [0, 1, 2], "test_patients": 36, "source_drop": 0.131}
    pooled = [{**base, "method": "finetune", "dice_patient_mean": 0.40},
              {**base, "method": "iac-shapley", "dice_patient_mean": 0.38, "seeds": [0, 1],
               "dice_vs_backbone": {"mean": 0.05, "ci_low": 0.02, "ci_high": 0.08},
               "dice_vs_finetune": {"mean": -0.02, "ci_low": -0.05, "ci_high": 0.004}}]
    text = transfer_markdown(pooled)
    assert "### KiTS, N = 4 labelled target patients" in text and "loses 13.1 Dice points" in text
    assert "| IAC, Shapley-pruned (fewer than 3 seeds) | 2 | 38.0 | +5.0 [+2.0, +8.0] (better) | " \
           "-2.0 [-5.0, +0.4] (cannot tell) |" in text
    assert text.index("backbone fine-tuned") < text.index("IAC, Shapley-pruned")  # the arms' order
    assert "No transfer run" in transfer_markdown([{**base, "setting": "same_site", "method": "finetune"}])
    written = write_transfer_section(tmp_path, tmp_path / "results")  # no results folder: says how to run
    assert "python -m shapnas transfer" in written.read_text()
    assert "no transfer run" in (written.parent / "transfer-findings.md").read_text()
    from shapnas.book.transfer_section import transfer_findings

    assert ("KiTS, N = 4 (2 seeds): against the source backbone +5.0 [+2.0, +8.0] (better), against the fine-tuned "
            "one -2.0 [-5.0, +0.4] (cannot tell)") in transfer_findings(pooled)


def test_the_dice_against_n_figure_appears_with_several_n(tmp_path):
    from shapnas.book.transfer_section import FIGURE_FILE, transfer_markdown
    from shapnas.plots.transfer import plot_transfer_arms, transfer_alt, transfer_sizes

    base = {"dataset": "acdc", "backbone": "basic_unet", "setting": "transfer", "profile": "workshop",
            "seeds": [0, 1, 2], "test_patients": 32, "source_drop": 0.1}
    pooled = []
    for n, dice in ((4, 0.80), (8, 0.84), (16, 0.86)):
        pooled += [{**base, "target_train_patients": n, "method": "finetune", "dice_patient_mean": dice},
                   {**base, "target_train_patients": n, "method": "iac-shapley", "dice_patient_mean": dice - 0.01,
                    "dice_vs_finetune": {"mean": -0.01, "ci_low": -0.02, "ci_high": 0.005}}]
    assert transfer_sizes(pooled, "acdc") == [4, 8, 16]
    fig = plot_transfer_arms(pooled)
    dice_ax, diff_ax = fig.axes[:2]
    assert [t.get_text() for t in dice_ax.get_xticklabels()] == ["4", "8", "16"]
    assert len(dice_ax.lines) == 2 and dice_ax.get_ylabel() == "ACDC test Dice (points)"
    alt = transfer_alt(pooled)
    assert "ACDC at N = 4, 8, 16: at N = 16 the best arm is backbone fine-tuned (86.0 Dice points)" in alt
    text = transfer_markdown(pooled, alt)
    assert f"```{{figure}} datasets/{FIGURE_FILE}" in text and f":alt: {alt}" in text
    assert FIGURE_FILE not in transfer_markdown(pooled)


def test_signal_and_stability_text_compares_with_the_threshold_and_chance():
    from shapnas.book.transfer_section import signal_and_stability_text

    rows = [{"policy": "none", "num_seeds": 3, "modal_agreement": 0.5, "chance_modal_agreement_p95": 0.6},
            {"policy": "shapley", "num_seeds": 3, "modal_agreement": 0.7, "chance_modal_agreement_p95": 0.6},
            {"policy": "alpha", "num_seeds": 1, "modal_agreement": 1.0, "chance_modal_agreement_p95": 1.0}]
    text = signal_and_stability_text([0.0009, 0.02], rows)
    assert "0.0009, 0.0200" in text and "1 of 2 at or above 0.01" in text
    assert "full search: modal-op agreement of the cells over 3 seeds 0.50, not above" in text
    assert "Shapley-pruned: modal-op agreement of the cells over 3 seeds 0.70, above" in text
    assert text.count("modal-op agreement") == 2  # one seed: no agreement to report
    assert signal_and_stability_text([], []) == ""


def test_transfer_plan_shares_each_seeds_source_backbone_and_runs_every_arm(tmp_path):
    from shapnas.experiments.matrix import dependency_order
    from shapnas.experiments.transfer import ARMS_JOB, build_transfer_jobs, transfer_plan, transfer_plan_root

    plan = transfer_plan("workshop")
    assert set(plan.datasets) >= {"acdc", "kits"} and len(plan.seeds) >= 3
    jobs = build_transfer_jobs(plan, results=tmp_path)
    dependency_order(jobs)  # unique ids, known prerequisites, no cycle
    root = transfer_plan_root(tmp_path.resolve())
    assert all(root in job.output.parents and root in job.spec.parents for job in jobs)
    pretrains = [j for j in jobs if j.kind == "pretrain"]
    assert len(pretrains) == len(plan.datasets) * len(plan.seeds)  # one source backbone per seed, shared by every N
    assert all(j.config["setting"] == "same_site" and j.config["slice_size"] == 32 for j in pretrains)
    arms = [j for j in jobs if j.kind == ARMS_JOB]
    assert len(arms) == len(plan.seeds) * sum(len(plan.ns_for(d)) for d in plan.datasets)
    assert len(jobs) == len(pretrains) + len(arms)
    assert any(len(plan.ns_for(d)) > 1 for d in plan.datasets)  # the book's Dice-against-N figure
    for dataset in plan.datasets:  # a second N of a seed waits for its first (which evaluates the source site)
        for job in (j for j in arms if j.config["dataset"] == dataset
                    and j.config["target_train_patients"] != plan.ns_for(dataset)[0]):
            assert len(job.deps) == 2 and f"-n{plan.ns_for(dataset)[0]}-" in job.deps[1]
    for job in arms:
        (pretrain,) = [p for p in pretrains if p.id in job.deps]
        assert {k: v for k, v in job.config.items() if k not in ("setting", "target_train_patients")} == \
            {k: v for k, v in pretrain.config.items() if k not in ("setting", "target_train_patients")}
        assert job.config["setting"] == "transfer" and \
            job.config["target_train_patients"] in plan.ns_for(job.config["dataset"])
        assert job.output.parent.name == f"eval-{TRANSFER_ARMS[-1]}"  # done once its last arm is evaluated
        assert job.output.parent.parent.name == f"transfer-n{job.config['target_train_patients']}"
    paper = build_transfer_jobs(transfer_plan("paper"), results=tmp_path)  # several N: the first one of a seed
    later = [j for j in paper if j.kind == ARMS_JOB and j.config["target_train_patients"] != 4]  # runs first
    assert later and all(len(j.deps) == 2 and "-n4-" in j.deps[1] for j in later)
    with pytest.raises(ValueError, match="expected smoke, workshop or paper"):
        transfer_plan("laptop")


def test_an_arms_job_runs_the_source_evaluation_and_every_arm(tmp_path):
    """The job entry's ``arms`` kind: one process evaluates the source backbone on its site, then every arm."""
    from shapnas.experiments.job_entry import run_job_spec
    from shapnas.experiments.transfer import ARMS_JOB

    cfg = _cfg(tmp_path, setting="transfer", target_train_patients=4, target_patients=34)
    stage = run_job_spec({"id": "x", "kind": ARMS_JOB, "target": "", "config": cfg.to_dict()})
    assert stage == stage_key(cfg, "eval", TRANSFER_ARMS[-1]).path(tmp_path)
    seed = tmp_path / "acdc" / "basic_unet" / "seed-0"
    assert (seed / "eval-backbone" / "metrics.json").exists()  # the source site: source_drop
    assert sorted(p.name for p in (seed / "transfer-n4").glob("eval-*")) == sorted(
        stage_name("eval", arm) for arm in TRANSFER_ARMS)
