"""``benchmarks/device_profile.py`` at smoke size on CPU: it runs and its JSON line has every figure."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from shapnas.config.stage_configs import RetrainConfig, config_from_profile

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "device_profile.py"


def _load():
    spec = importlib.util.spec_from_file_location("device_profile", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def device_profile():
    return _load()


def test_search_schedule_follows_the_pruning_rounds(device_profile):
    cfg = config_from_profile(RetrainConfig, "paper", dataset="acdc")
    pruned = device_profile.search_schedule(cfg, "shapley")
    rounds = [epoch for epoch, (_, _, prune) in enumerate(pruned) if prune]
    assert rounds == [19, 24, 29, 34, 39, 44]  # after the 15 warm-up epochs, every 5, one op per edge each
    assert [ops for _, ops, _ in pruned[44:]] == [2, 1, 1, 1, 1, 1]
    assert len(pruned) == 50 and pruned[-1][0] == "settle"  # 5 settle epochs after the last round
    full = device_profile.search_schedule(cfg, "none")
    assert len(full) == cfg.search_epochs and not any(prune for _, _, prune in full)


def test_smoke_run_on_cpu_prints_every_figure(device_profile, tmp_path, capsys):
    result = device_profile.main(["--device", "cpu", "--profile", "smoke", "--steps", "2", "--results", str(tmp_path)])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line == json.loads(json.dumps(result))
    assert line["device"] == "cpu" and line["profile_measured"] == "smoke" and line["peak_memory_gib"] is None
    for key in ("backbone_step_s", "backbone_epoch_s", "supernet_step_s", "supernet_weight_step_s",
                "supernet_pruned_step_s", "supernet_epoch_s", "discrete_step_s"):
        assert line[key] > 0, key
    assert set(line["shapley_round_s"]) == {"ig", "owen", "mc"} and min(line["shapley_round_s"].values()) > 0
    assert set(line["slices_per_s"]) == {"backbone", "supernet", "discrete"}
    assert set(line["projected_s"]) == {"pretrain", "search_full", "search_pruned", "retrain", "total_pruned"}
    assert all(value > 0 for value in line["projected_s"].values())
    assert line["autocast"] is None
