"""benchmarks/signal.py end to end on the smoke profile: its figures, taken where the search's first round is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("setting", ["same_site", "transfer"])
def test_signal_benchmark_reads_the_search_s_own_first_round(tmp_path, setting):
    """The first round is taken after the pruning warm-up (``prune_warmup_epochs``, not the architecture
    warm-up) with the search's own estimator; the last line is one JSON object with the signal figures, in the
    same-site setting and in the transfer setting (the target site's few V patients: the second value batch comes
    from their whole volumes)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "signal.py"), "--dataset", "acdc",
                          "--profile", "smoke", "--seed", "0", "--results", str(tmp_path),
                          "--set", "prune_warmup_epochs=2",  # the smoke profile's warmup_epochs is 1
                          "--set", f"setting={setting}"],
                         capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["setting"] == setting and 0 <= result["val_dice_backbone"] <= 1
    assert result["shapley_epoch"] == 2 and result["shapley_estimator"] == "ig"
    for key in ("alpha_max_prob", "alpha_uniform", "shapley_signal", "shapley_batch_spearman", "loss_first",
                "loss_last", "cell_weight_change"):
        assert key in result, key
    assert len(result["signal_by_epoch"]) == result["epochs"] == 4
    assert result["alpha_uniform"] == 1 / 8


def test_shapley_accuracy_compares_rounds_across_disjoint_value_batches(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "shapley_accuracy.py"), "--dataset", "acdc",
                          "--profile", "smoke", "--seed", "0", "--results", str(tmp_path), "--batch-sizes", "2,4,10000",
                          "--batches-only"], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["rounds"], "the smoke search runs Shapley rounds"
    for round_ in result["rounds"]:
        assert [row["slices"] for row in round_["value_batches"]] == [2, 4], "a size V cannot fill twice is skipped"
        for row in round_["value_batches"]:
            assert -1 <= row["spearman"] <= 1 and 0 <= row["decision_agreement"] <= 1
    assert "noise_ceiling" not in result, "--batches-only runs no Monte-Carlo reference"


def test_backbone_plateau_reports_the_generalisation_gap(tmp_path):
    """The backbone benchmark scores the selected backbone on its training slices and on V (the gap that says
    whether the room for the cells is one of capacity or of generalisation) and counts the patients."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "backbone_plateau.py"), "--dataset", "acdc",
                          "--profile", "smoke", "--seed", "0", "--results", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert 0 <= result["train_slice_dice"] <= 1 and 0 <= result["val_slice_dice"] <= 1
    assert result["train_patients"] >= 1 and result["test_patients"] >= 1
