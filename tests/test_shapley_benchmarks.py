"""The figures of benchmarks/shapley_accuracy.py and benchmarks/search_speed.py on hand-made inputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


accuracy = _load("shapley_accuracy")
speed = _load("search_speed")

PLAYERS = [(0, 1), (0, 2), (0, 3), (0, 4), (1, 1), (1, 5), (1, 6), (2, 7)]


def test_agreement_of_an_estimate_with_itself_is_perfect():
    values = np.array([0.1, 0.4, -0.2, 0.3, 0.5, 0.0, 0.2, 0.9])
    assert accuracy.agreement(values, values, PLAYERS, per_round=2) == {
        "spearman": 1.0, "within_edge_spearman": 1.0, "decision_agreement": 1.0}


def test_agreement_counts_edges_whose_pruned_ops_differ():
    reference = np.array([0.1, 0.4, -0.2, 0.3, 0.5, 0.0, 0.2, 0.9])
    estimate = reference.copy()
    estimate[[1, 3]] = estimate[[3, 1]]  # edge 0: 0.4 and 0.3 swap; its two lowest (ops 3, 1) stay
    estimate[[5, 6]] = estimate[[6, 5]]  # edge 1: the lowest op changes from 5 to 6
    figures = accuracy.agreement(estimate, reference, PLAYERS, per_round=1)
    assert figures["decision_agreement"] == pytest.approx(0.5)  # edges 0 and 1 decide; edge 1 differs
    assert figures["within_edge_spearman"] == pytest.approx(np.mean([0.8, 0.5]))
    assert figures["spearman"] < 1.0


def test_worst_seed_takes_the_worst_of_each_target():
    results = [{"seed": 0, "speedup": 5.0, "shapley_overhead": 0.05, "speedup_if_shapley_free": 5.5,
                "speedup_cpu": 6.0, "dice_full": 0.85, "dice_shapley": 0.86},
               {"seed": 1, "speedup": 4.2, "shapley_overhead": 0.09, "speedup_if_shapley_free": 4.6,
                "speedup_cpu": 6.5, "dice_full": 0.85, "dice_shapley": 0.83,
                "dice_shapley_vs_full": {"mean": -0.02, "ci_low": -0.05, "ci_high": 0.01}}]
    assert speed.worst(results) == {"speedup": 4.2, "shapley_overhead": 0.09, "speedup_if_shapley_free": 4.6,
                                    "speedup_cpu": 6.0, "dice_loss": pytest.approx(0.02), "seed_of_dice_loss": 1,
                                    "dice_shapley_vs_full_of_that_seed": {"mean": -0.02, "ci_low": -0.05,
                                                                          "ci_high": 0.01}}
