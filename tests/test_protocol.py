"""Tests of the training-protocol study (augmentation × backbone family): its jobs, its pooled records and
intervals, its table, its book page and its command."""

from __future__ import annotations

import numpy as np
import pytest

from shapnas.experiments.protocol import (build_protocol_jobs, format_protocol_table, protocol_findings, protocol_plan,
                                          protocol_records, protocol_root)
from shapnas.runs.files import save_json


def _eval(run, target: str, dice: dict[str, float], backbone: str, seed: int, profile: str = "smoke") -> None:
    per_case = [{"case_id": f"{p}_f1", "patient_id": p, "regions": {"A": {"dice": v}}} for p, v in dice.items()]
    save_json(run / f"eval-{target}" / "metrics.json", {
        "dataset": "acdc", "backbone": backbone, "seed": seed, "target": target, "profile": profile,
        "dice_mean": float(np.mean(list(dice.values()))), "dice_per_class": {"A": 0.0}, "hd95_mean": 1.0,
        "per_case": per_case})


def test_protocol_jobs_cover_every_arm_and_write_the_phantoms_once(tmp_path):
    plan = protocol_plan("smoke")
    jobs = build_protocol_jobs(plan, results=tmp_path)
    assert len({j.id for j in jobs}) == len(jobs) == 2 * 2 * 2 * 4  # augmentations × backbones × seeds × jobs
    pretrains = [j for j in jobs if j.kind == "pretrain"]
    writer = pretrains[0]
    assert writer.config["data_dir"] == "" and not writer.deps
    assert writer.config["augmentation"] == "none" and writer.config["backbone"] == "basic_unet"
    for job in pretrains[1:]:
        assert writer.id in job.deps  # every other pre-training waits for the phantom data
    phantoms = str(protocol_root(tmp_path, "none").resolve() / "phantoms" / "acdc")
    assert {j.config["data_dir"] for j in pretrains[2:]} == {phantoms}
    assert {(j.config["augmentation"], j.config["backbone"]) for j in jobs} == {
        (a, b) for a in ("none", "standard") for b in ("basic_unet", "attention_unet")}
    assert {j.target for j in jobs if j.kind == "evaluate"} == {"backbone", "finetune", "shapley"}
    standard = [j for j in jobs if j.config["augmentation"] == "standard"]
    assert all(str(j.output).startswith(str(protocol_root(tmp_path, "standard").resolve())) for j in standard)


def test_protocol_records_pool_seeds_and_pair_the_augmentations(tmp_path, capsys):
    plan = protocol_plan("smoke")
    base = dict(zip([f"p{i}" for i in range(32)], np.linspace(0.5, 0.8, 32)))
    shift = {("none", "backbone"): 0.0, ("none", "finetune"): 0.01, ("none", "shapley"): 0.02,
             ("standard", "backbone"): 0.03, ("standard", "finetune"): 0.03, ("standard", "shapley"): 0.04}
    for augmentation in plan.augmentations:
        for seed in plan.seeds:
            run = protocol_root(tmp_path, augmentation) / "acdc" / "basic_unet" / f"seed-{seed}"
            for target in ("backbone", "finetune", "shapley"):
                _eval(run, target, {k: v + shift[(augmentation, target)] for k, v in base.items()}, "basic_unet", seed)
    pooled = protocol_records(tmp_path, plan)
    by = {(r["augmentation"], r["method"]): r for r in pooled}
    assert by[("none", "iac-shapley")]["dice_vs_backbone"]["mean"] == pytest.approx(0.02)
    assert by[("standard", "iac-shapley")]["dice_vs_finetune"]["mean"] == pytest.approx(0.01)
    effect = by[("standard", "backbone")]["augmentation_effect"]
    assert effect["mean"] == pytest.approx(0.03) and effect["seeds"] == 2
    assert by[("none", "backbone")]["augmentation_effect"] is None
    table = format_protocol_table(pooled)
    assert "+3.0 [+3.0, +3.0]" in table and "+2.0 [+2.0, +2.0]" in table
    assert format_protocol_table(pooled, markdown=True).count("| basic_unet |") == 3  # two arms rows, one effect row
    (findings,) = protocol_findings(pooled)  # every difference is a constant shift: each interval excludes 0
    assert findings.startswith("ACDC: IAC against its own backbone higher in 2, lower in 0, cannot tell in 0 of 2")
    assert "the backbone scores higher in 1, lower in 0, cannot tell in 0 of 1 families" in findings

    from shapnas.book.protocol_section import protocol_markdown, write_protocol_section

    assert "`smoke` plan" in protocol_markdown(tmp_path)
    assert "python -m shapnas protocol" in write_protocol_section(tmp_path, tmp_path / "none").read_text()
    page = write_protocol_section(tmp_path / "site", tmp_path)
    assert (page.parent / "protocol-smoke.png").stat().st_size > 0 and "protocol-smoke.png" in page.read_text()
    from shapnas.plots.protocol import protocol_alt, protocol_differences

    assert len(protocol_differences(pooled)) == 4  # two augmentations × two comparisons
    assert "ACDC · basic_unet · standard against the fine-tuned backbone: +1.0 points" in protocol_alt(pooled)

    from shapnas.cli import main

    capsys.readouterr()
    assert main(["protocol", "--profile", "smoke", "--results", str(tmp_path), "--table-only"]) == 0
    assert "ACDC" in capsys.readouterr().out
