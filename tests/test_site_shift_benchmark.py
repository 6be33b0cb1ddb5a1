"""benchmarks/site_shift.py end to end on the smoke profile: the backbone of site a scored on both sites."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from shapnas.config.stage_configs import MIN_TARGET_TEST_PATIENTS
from shapnas.data.phantoms.sites import site_record

ROOT = Path(__file__).resolve().parents[1]


def test_site_shift_benchmark_scores_the_source_backbone_on_both_sites(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "site_shift.py"), "--dataset", "acdc",
                          "--profile", "smoke", "--seed", "0", "--results", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["dataset"] == "acdc" and result["profile"] == "smoke"
    assert result["source_drop"] == result["source_dice"] - result["target_dice"]
    assert 0 <= result["target_dice"] <= 1 and 0 <= result["source_dice"] <= 1
    assert result["source_test_patients"] >= 1 and result["target_test_patients"] >= MIN_TARGET_TEST_PATIENTS
    assert result["target_train_patients"] == 8
    assert result["site_parameters"] == {"site": "b", **site_record("acdc", "b")}
    assert set(result["target_dice_per_class"]) == {"RV", "MYO", "LV"}
    assert any(line.startswith("target: patient-level Dice") for line in lines)
    assert json.loads((tmp_path / "acdc" / "site-shift.json").read_text()) == result
    assert (tmp_path / "phantoms" / "acdc-site-b" / "_phantom.json").is_file()
